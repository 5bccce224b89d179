"""SMPLify on 2D keypoints, for one image or a whole video at once.

Camera: OpenCV axes at the origin, intrinsics given (from EXIF, a file, or a default); the body's
translation places it in front of the camera. Stages as in SMPLify: (1) the camera stage fits the
root's orientation and translation to the torso, from a depth guessed by similar triangles, for the
body facing the camera and turned around (the flip test keeps the better); (2–4) everything, with the
pose and shape priors relaxed stage by stage. For video, all frames are optimised together: one
shape for the sequence and second differences of pose and joints keep the motion smooth; frames
without a detection are carried by their neighbours.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from engine.body_priors import BodyPriors, gmof
from engine.data.keypoints import KEYPOINTS
from scenes.body import BodyModel, rodrigues

# the torso: shoulders and hips, the points the camera stage fits
TORSO = [KEYPOINTS.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]
# eyes and ears sit on the face's surface and detectors place them loosely: half weight
_KEYPOINT_WEIGHT = torch.tensor([0.5 if n.endswith(("eye", "ear")) else 1.0 for n in KEYPOINTS])


@dataclass
class FitConfig:
    sigma: float = 100.0  # GMoF scale, in pixels at a focal length of 1000 px
    min_confidence: float = 0.1
    temporal: bool = True  # one shape and smooth motion over the frames (False: every frame alone)
    pose_weights: tuple[float, ...] = (30.0, 6.0, 1.5)  # the pose prior's weight in each full stage
    shape_weights: tuple[float, ...] = (20.0, 8.0, 3.0)
    angle_weight: float = 2.0
    interpenetration_weight: float = 3000.0
    # tuned on synthetic sequences (seed 1, not the benchmark's): accel error 38 → 28 mm/frame²
    smooth_joints: float = 1.0e4  # per m² of joint acceleration, scaled to pixels by focal/depth
    smooth_pose: float = 1000.0  # per rad² of pose acceleration
    camera_iterations: int = 30
    stage_iterations: int = 40
    # SMPLify's flip test, widened: the camera stage starts facing the camera, turned ±90° and turned
    # around; whichever explains a frame's keypoints best after the first full stage is kept
    start_yaws_deg: tuple[float, ...] = (0.0, 90.0, 180.0, -90.0)
    num_betas: int = 10


@dataclass
class FitResult:
    betas: Tensor  # (T, S): the same row for every frame when temporal
    pose: Tensor  # (T, J, 3)
    transl: Tensor  # (T, 3)
    detected: np.ndarray  # (T,) frames with a usable detection
    prior: str
    seconds: float
    stages: list[dict] = field(default_factory=list)


def default_focal(width: int, height: int) -> float:
    """A 53° field of view across the longer side: between phone main cameras and webcams."""
    return float(max(width, height))


def _intrinsics(K: np.ndarray | Tensor, T: int) -> Tensor:
    K = torch.as_tensor(np.asarray(K), dtype=torch.float64)
    return K.expand(T, 3, 3) if K.ndim == 2 else K


def project(points: Tensor, K: Tensor) -> Tensor:
    """(T, N, 3) camera-frame points, (T, 3, 3) intrinsics → (T, N, 2) pixels."""
    z = points[..., 2:].clamp_min(1e-3)
    uv = points[..., :2] / z
    return uv * torch.stack([K[:, 0, 0], K[:, 1, 1]], -1)[:, None] + K[:, None, :2, 2]


def _facing_camera(T: int, yaw: float) -> Tensor:
    """Root axis-angle turning the body (y up, facing +z) to face an OpenCV camera (y down, looking +z),
    then turned by `yaw` about its own vertical axis."""
    from scipy.spatial.transform import Rotation

    R = Rotation.from_rotvec([math.pi, 0, 0]) * Rotation.from_rotvec([0, yaw, 0])
    return torch.as_tensor(R.as_rotvec()).expand(T, 3).clone()


def _fill_missing(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Frames without a value take their nearest neighbours' (linear between, held at the ends)."""
    if ok.all() or not ok.any():
        return values
    t = np.arange(len(values))
    out = values.copy()
    for c in range(values.shape[1]):
        out[~ok, c] = np.interp(t[~ok], t[ok], values[ok, c])
    return out


def initial_translation(model_kp: Tensor, kp: np.ndarray, K: Tensor, conf: np.ndarray, ok: np.ndarray,
                        root_rot: Tensor) -> np.ndarray:
    """Depth by similar triangles (the rest body's torso height against the detected one), x and y by
    back-projecting the torso's centre. model_kp (K, 3) rest keypoints at zero translation."""
    R = rodrigues(root_rot[:1])[0]
    rest = (model_kp @ R.T).numpy()
    sh, hp = [KEYPOINTS.index(n) for n in ("left_shoulder", "right_shoulder")], \
        [KEYPOINTS.index(n) for n in ("left_hip", "right_hip")]
    torso3 = np.linalg.norm(rest[sh].mean(0) - rest[hp].mean(0))
    centre3 = rest[TORSO].mean(0)
    out = np.zeros((len(kp), 3))
    good = np.zeros(len(kp), bool)
    for t in range(len(kp)):
        c = conf[t]
        if not ok[t]:
            continue
        f = float(K[t, 0, 0] + K[t, 1, 1]) / 2
        if c[sh].min() > 0 and c[hp].min() > 0:
            height2 = np.linalg.norm(kp[t, sh, :2].mean(0) - kp[t, hp, :2].mean(0))
            z = f * torso3 / max(height2, 1.0)
        else:  # no full torso: the spread of what was seen against the body's size (rough)
            seen = c > 0
            spread = np.linalg.norm(np.ptp(kp[t, seen, :2], 0)) if seen.sum() > 1 else 0.0
            z = f * 1.7 / max(spread, 1.0) if spread > 0 else 3.0
        torso = c[TORSO] > 0
        pts = kp[t, TORSO][torso, :2] if torso.any() else kp[t, c > 0, :2]
        u, v = pts.mean(0)
        cx, cy = float(K[t, 0, 2]), float(K[t, 1, 2])
        centre = np.array([(u - cx) * z / float(K[t, 0, 0]), (v - cy) * z / float(K[t, 1, 1]), z])
        out[t] = centre - centre3
        good[t] = True
    return _fill_missing(out, good) if good.any() else np.tile([0, 0, 3.0], (len(kp), 1))


class _Energy:
    """The SMPLify energy over a batch of frames; returns the total and each frame's data term."""

    def __init__(self, model: BodyModel, priors: BodyPriors, kp: Tensor, K: Tensor, cfg: FitConfig):
        self.model, self.priors, self.cfg = model, priors, cfg
        self.terms = {k: v.double() for k, v in model.fitting_terms().items()}
        self.target = kp[..., :2]
        self.conf = kp[..., 2] * _KEYPOINT_WEIGHT.double()
        self.K = K
        self.scale = (1000.0 / K[:, 0, 0]) ** 2  # residuals as if seen at a focal length of 1000 px

    def joints(self, betas, pose, transl):
        return self.model.joints_and_keypoints(betas, pose, transl, self.terms)

    def data(self, keypoints: Tensor, mask: Tensor | None = None) -> Tensor:
        uv = project(keypoints, self.K)
        sq = ((uv - self.target) ** 2).sum(-1) * self.scale[:, None]
        w = self.conf if mask is None else self.conf * mask
        return (w * gmof(sq, self.cfg.sigma)).sum(1)

    def smooth(self, joints: Tensor, pose: Tensor) -> Tensor:
        if joints.shape[0] < 3:
            return joints.new_zeros(())
        acc = joints[2:] - 2 * joints[1:-1] + joints[:-2]
        depth = joints[1:-1, :, 2].mean(1).clamp_min(0.5)
        px = (self.K[1:-1, 0, 0] / depth) ** 2 * self.scale[1:-1]  # m² → px² at this depth
        pacc = pose[2:] - 2 * pose[1:-1] + pose[:-2]
        return (self.cfg.smooth_joints * 1e-6 * px * (acc ** 2).sum((1, 2))).sum() + \
            self.cfg.smooth_pose * (pacc[:, 1:] ** 2).sum()


def _lbfgs(params: list[Tensor], closure, iterations: int) -> None:
    """L-BFGS with the thread governor ticking at every evaluation: the fit is thousands of tiny ops,
    each a barrier where, on a shared CPU, a thread waits for its partner's core (beside one busy
    process a 2-thread fit fell from 52 to 0.5 frames/s); see `engine.threads`."""
    from engine.threads import tick

    def ticking():
        tick()
        return closure()

    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)
    opt.step(ticking)


def fit(model: BodyModel, keypoints: np.ndarray, K: np.ndarray, cfg: FitConfig | None = None,
        gmm: dict | None = None, progress=None) -> FitResult:
    """keypoints (T, 23, 3) pixels + confidence in our order; K (3, 3) or (T, 3, 3)."""
    cfg = cfg or FitConfig()
    t0 = time.time()
    T = len(keypoints)
    model = model.to(torch.float64)
    priors = BodyPriors(model, gmm)
    kp_np = np.asarray(keypoints, np.float64).copy()
    kp_np[..., 2] = np.where(kp_np[..., 2] >= cfg.min_confidence, kp_np[..., 2], 0.0)
    conf = kp_np[..., 2]
    detected = (conf[:, TORSO] > 0).sum(1) >= 2
    if not detected.any():
        raise ValueError("no frame has a usable detection (at least two torso keypoints)")
    kp = torch.as_tensor(kp_np)
    Kt = _intrinsics(K, T)
    energy = _Energy(model, priors, kp, Kt, cfg)
    S = min(cfg.num_betas, model.num_betas)
    J = model.num_joints
    stages = []

    with torch.no_grad():
        _, rest_kp = model.joints_and_keypoints(torch.zeros(1, S, dtype=torch.float64),
                                                torch.zeros(1, J, 3, dtype=torch.float64), None, energy.terms)

    def camera_stage(yaw: float) -> tuple[Tensor, Tensor, Tensor]:
        orient = _facing_camera(T, yaw)
        transl0 = torch.as_tensor(initial_translation(rest_kp[0], kp_np, Kt, conf, detected, orient))
        orient, transl = orient.clone().requires_grad_(), transl0.clone().requires_grad_()
        betas = torch.zeros(T, S, dtype=torch.float64)
        torso_mask = torch.zeros(len(KEYPOINTS), dtype=torch.float64)
        torso_mask[TORSO] = 1

        def closure():
            opt_zero(orient, transl)
            pose = torch.cat([orient[:, None], torch.zeros(T, J - 1, 3, dtype=torch.float64)], 1)
            _, k3 = energy.joints(betas, pose, transl)
            # SMPLify's depth term keeps the camera stage from sliding along the viewing ray
            e = energy.data(k3, torso_mask).sum() + 100.0 * ((transl[:, 2] - transl0[:, 2]) ** 2).sum()
            e.backward()
            return e

        _lbfgs([orient, transl], closure, cfg.camera_iterations)
        return orient.detach(), transl.detach(), transl0

    def full_stage(pose, betas_shared, transl, pose_w, shape_w, temporal, iterations):
        pose = pose.clone().requires_grad_()
        transl = transl.clone().requires_grad_()
        betas_shared = betas_shared.clone().requires_grad_()
        last = {}

        def closure():
            opt_zero(pose, transl, betas_shared)
            betas = betas_shared.expand(T, S) if betas_shared.shape[0] == 1 else betas_shared
            j3, k3 = energy.joints(betas, pose, transl)
            data = energy.data(k3)
            e = (data + pose_w * priors.pose(pose) + shape_w * priors.shape(betas) / (T if temporal else 1)
                 + cfg.angle_weight * priors.angle(pose) + cfg.interpenetration_weight * priors.interpenetration(j3))
            e = e.sum()
            if temporal:
                e = e + energy.smooth(j3, pose)
            e.backward()
            last["data"] = data.detach()
            return e

        _lbfgs([pose, transl, betas_shared], closure, iterations)
        return pose.detach(), betas_shared.detach(), transl.detach(), last["data"]

    # camera stage and the flip test: each starting turn, then the first full stage per frame alone
    candidates = []
    for yaw in cfg.start_yaws_deg:
        orient, transl, _ = camera_stage(math.radians(yaw))
        pose = torch.cat([orient[:, None], torch.zeros(T, J - 1, 3, dtype=torch.float64)], 1)
        betas = torch.zeros(T, S, dtype=torch.float64)
        candidates.append(full_stage(pose, betas, transl, cfg.pose_weights[0], cfg.shape_weights[0], False,
                                     cfg.stage_iterations))
        if progress:
            progress()
    data = torch.stack([c[3] for c in candidates]).numpy()  # (C, T)
    if T > 2:  # a person does not spin from frame to frame: compare over a short window
        window = np.ones(min(9, T))
        data = np.stack([np.convolve(d, window, mode="same") for d in data])
    pick = torch.as_tensor(data.argmin(0))
    rows = torch.arange(T)
    pose = torch.stack([c[0] for c in candidates])[pick, rows]
    betas = torch.stack([c[1] for c in candidates])[pick, rows]
    transl = torch.stack([c[2] for c in candidates])[pick, rows]
    stages.append({"stage": "flip test", "start_yaw_frames": {str(y): int((pick == i).sum())
                                                              for i, y in enumerate(cfg.start_yaws_deg)}})
    # frames without a detection start from their neighbours
    pose = torch.as_tensor(_fill_missing(pose.reshape(T, -1).numpy(), detected)).reshape(T, J, 3)
    transl = torch.as_tensor(_fill_missing(transl.numpy(), detected))
    if cfg.temporal:
        w = torch.as_tensor(detected, dtype=torch.float64)[:, None]
        betas = ((betas * w).sum(0, keepdim=True) / w.sum())
    for i, (pw, sw) in enumerate(zip(cfg.pose_weights[1:], cfg.shape_weights[1:])):
        pose, betas, transl, data = full_stage(pose, betas, transl, pw, sw, cfg.temporal, cfg.stage_iterations)
        stages.append({"stage": f"full {i + 2}", "pose_weight": pw, "shape_weight": sw,
                       "data_per_frame": float(data.mean())})
        if progress:
            progress()
    betas = betas.expand(T, S) if betas.shape[0] == 1 else betas
    return FitResult(betas.clone(), pose, transl, detected, priors.name, time.time() - t0, stages)


def opt_zero(*tensors: Tensor) -> None:
    for t in tensors:
        if t.grad is not None:
            t.grad = None


def procrustes(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Similarity-aligned pred (N, 3) onto gt (N, 3) (rotation, scale, translation)."""
    mp, mg = pred.mean(0), gt.mean(0)
    p, g = pred - mp, gt - mg
    U, s, Vt = np.linalg.svd(p.T @ g)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.diag([1, 1, d])
    R = U @ D @ Vt
    scale = (s * np.diag(D)).sum() / (p ** 2).sum()
    return scale * p @ R + mg


def body_vertices(model: BodyModel, result: FitResult, batch: int = 64) -> np.ndarray:
    """(T, V, 3) float32 meshes in the camera frame."""
    out = []
    m = model.to(torch.float64)
    with torch.no_grad():
        for i in range(0, len(result.pose), batch):
            v, _ = m(result.betas[i:i + batch], result.pose[i:i + batch], result.transl[i:i + batch])
            out.append(v.float().numpy())
    return np.concatenate(out)

