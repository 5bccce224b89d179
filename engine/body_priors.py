"""SMPLify's energy terms for a body model, written for any model in our blend-shape form.

Poses are axis-angle per joint in the rest pose's world-aligned frames (B, J, 3). The priors that do
not come from a user's file are defined on each model's own skeleton: every joint gets an anatomical
frame from its rest bone — a1 = up-forward normal × bone (flexion), a2 = bone × a1, a3 = bone (twist) —
so one table of joint limits serves the open model (A-pose rest) and SMPL (T-pose rest).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from scenes.body import BodyModel, shaped

FORWARD = (0.0, 0.0, 1.0)  # the body faces +z, y is up

# (lo, hi) on (a1 flexion, a2, a3 twist) in radians, for centre and left joints; right joints mirror a2, a3
_LIMITS = {
    # a spine joint bends little on its own: three of them reach about 70° forward and 35° of twist
    "spine1": ((-0.4, -0.2, -0.2), (0.2, 0.2, 0.2)),
    "spine2": ((-0.4, -0.2, -0.2), (0.2, 0.2, 0.2)),
    "spine3": ((-0.4, -0.2, -0.2), (0.2, 0.2, 0.2)),
    "neck": ((-0.7, -0.6, -0.9), (0.6, 0.6, 0.9)),
    "head": ((-0.5, -0.4, -0.6), (0.4, 0.4, 0.6)),
    "left_hip": ((-2.3, -0.5, -0.8), (0.6, 1.3, 0.8)),
    "left_knee": ((-0.05, -0.15, -0.4), (2.6, 0.15, 0.4)),
    "left_ankle": ((-0.7, -0.4, -0.5), (0.9, 0.4, 0.5)),
    "left_foot": ((-0.8, -0.2, -0.2), (0.6, 0.2, 0.2)),
    "left_collar": ((-0.25, -0.15, -0.25), (0.25, 0.4, 0.25)),
    "left_shoulder": ((-3.0, -1.2, -1.6), (1.0, 2.4, 1.6)),
    "left_elbow": ((-2.7, -0.2, -1.6), (0.05, 0.2, 1.6)),
    "left_wrist": ((-1.2, -0.6, -0.8), (1.2, 0.6, 0.8)),
}
# SMPLify's angle prior: exp of bending the wrong way, a1 sign per joint (knees bend +a1, elbows −a1)
_WRONG_WAY = {"left_knee": -1.0, "right_knee": -1.0, "left_elbow": 1.0, "right_elbow": 1.0}


def gmof(sq_dist: Tensor, sigma: float) -> Tensor:
    """Geman-McClure of a squared distance: σ² d² / (σ² + d²), robust to outliers beyond σ."""
    return sigma ** 2 * sq_dist / (sigma ** 2 + sq_dist)


def anatomical_frames(joints: Tensor, parents: Tensor, hinges: list[bool] | None = None) -> Tensor:
    """Rest joints (J, 3) → per-joint frames (J, 3, 3) whose rows are a1, a2, a3; `hinges` marks
    the joints (elbows, knees) whose flexion axis is the normal of their rest bend when they have one."""
    J = joints.shape[0]
    hinges = hinges or [False] * J
    fwd = torch.tensor(FORWARD, dtype=joints.dtype)
    frames = torch.eye(3, dtype=joints.dtype).repeat(J, 1, 1)
    for j in range(1, J):
        children = [c for c in range(J) if int(parents[c]) == j]
        # a bone points to its children (their mean when it forks), a leaf continues its parent's bone
        d = (joints[children].mean(0) - joints[j]) if children else (joints[j] - joints[int(parents[j])])
        d = d / d.norm().clamp_min(1e-9)
        a1 = torch.linalg.cross(fwd, d)
        if a1.norm() < 0.3:  # a bone along the forward axis (a foot): flex about the body's left axis
            a1 = torch.tensor([1.0, 0, 0], dtype=joints.dtype)
        a1 = a1 / a1.norm()
        if len(children) == 1 and hinges[j]:
            # a hinge already bent at rest (an A-pose's elbows) flexes about the normal of its bend
            up = joints[j] - joints[int(parents[j])]
            h = torch.linalg.cross(up / up.norm(), d)
            if h.norm() > math.sin(math.radians(10)):
                a1 = h / h.norm() * torch.sign(h @ a1)
        a2 = torch.linalg.cross(d, a1)
        frames[j] = torch.stack([a1, a2 / a2.norm(), d])
    return frames


def _limit_table(names: tuple[str, ...]) -> tuple[Tensor, Tensor, Tensor]:
    lo = torch.full((len(names), 3), -math.pi)
    hi = torch.full((len(names), 3), math.pi)
    known = torch.zeros(len(names), dtype=torch.bool)
    for j, name in enumerate(names):
        key = "left_" + name[6:] if name.startswith("right_") else name
        if key not in _LIMITS:
            continue
        l, h = torch.tensor(_LIMITS[key][0]), torch.tensor(_LIMITS[key][1])
        if name.startswith("right_"):
            l, h = torch.stack([l[0], -h[1], -h[2]]), torch.stack([h[0], -l[1], -l[2]])
        lo[j], hi[j], known[j] = l, h, True
    return lo, hi, known


@dataclass
class GMMPrior:
    """SMPLify's mixture prior on the body pose (joints 1…): min over components of the negative log of
    w_k N(θ; μ_k, Σ_k), as in SMPLify's MaxMixture."""

    means: Tensor  # (M, D)
    precisions: Tensor  # (M, D, D)
    constants: Tensor  # (M,)

    @classmethod
    def from_arrays(cls, gmm: dict[str, np.ndarray]) -> "GMMPrior":
        covars = torch.as_tensor(gmm["covars"], dtype=torch.float64)
        D = covars.shape[-1]
        logdet = torch.linalg.slogdet(covars)[1]
        const = -torch.log(torch.as_tensor(gmm["weights"], dtype=torch.float64)) + 0.5 * (logdet + D * math.log(2 * math.pi))
        return cls(torch.as_tensor(gmm["means"], dtype=torch.float64), torch.linalg.inv(covars), const)

    def __call__(self, body_pose: Tensor) -> Tensor:
        """body_pose (B, D) → (B,) energies."""
        diff = body_pose[:, None, :] - self.means.to(body_pose.dtype)  # (B, M, D)
        maha = torch.einsum("bmd,mde,bme->bm", diff, self.precisions.to(body_pose.dtype), diff)
        return (0.5 * maha + self.constants.to(body_pose.dtype)).min(1).values


class BodyPriors:
    """The pose, angle, shape and interpenetration terms for one model; each returns (B,) energies."""

    def __init__(self, model: BodyModel, gmm: dict[str, np.ndarray] | None = None):
        self.model = model
        names = model.joint_names or tuple(f"joint{j}" for j in range(model.num_joints))
        rest = torch.einsum("jv,vc->jc", model.J_regressor.double(), model.v_template.double())
        hinges = [n.endswith(("elbow", "knee")) for n in names]
        self.frames = anatomical_frames(rest, model.parents, hinges)  # (J, 3, 3)
        self.lo, self.hi, known = _limit_table(names)
        self.gmm = GMMPrior.from_arrays(gmm) if gmm is not None else None
        if self.gmm is not None and self.gmm.means.shape[1] != 3 * (model.num_joints - 1):
            raise ValueError(f"the GMM prior has {self.gmm.means.shape[1]} dimensions; this model's body pose has "
                             f"{3 * (model.num_joints - 1)}")
        self.name = "gmm (user file)" if self.gmm is not None else "joint limits + L2 (model's own joints)"
        self.limited = known
        wrong = [(names.index(n), s) for n, s in _WRONG_WAY.items() if n in names]
        self.angle_joints = torch.tensor([j for j, _ in wrong], dtype=torch.long)
        self.angle_signs = torch.tensor([s for _, s in wrong])
        self.spheres = _body_spheres(model)

    def anatomical(self, pose: Tensor) -> Tensor:
        """(B, J, 3) axis-angle → (B, J, 3) components on each joint's (a1, a2, a3)."""
        return torch.einsum("jac,bjc->bja", self.frames.to(pose.dtype), pose)

    def pose(self, pose: Tensor) -> Tensor:
        if self.gmm is not None:
            return self.gmm(pose[:, 1:].reshape(pose.shape[0], -1))
        a = self.anatomical(pose)[:, 1:]
        lo, hi = self.lo[1:].to(pose.dtype), self.hi[1:].to(pose.dtype)
        over = torch.relu(a - hi) + torch.relu(lo - a)
        # limits dominate; a weak pull to the rest pose settles what the keypoints leave free (twists)
        return 10.0 * (over ** 2).sum((1, 2)) + 0.05 * (a ** 2).sum((1, 2))

    def angle(self, pose: Tensor) -> Tensor:
        if not len(self.angle_joints):
            return pose.new_zeros(pose.shape[0])
        a1 = self.anatomical(pose)[:, self.angle_joints, 0]
        return torch.exp(self.angle_signs.to(pose.dtype) * a1).sum(1)

    @staticmethod
    def shape(betas: Tensor) -> Tensor:
        return (betas ** 2).sum(1)

    def interpenetration(self, joints: Tensor) -> Tensor:
        """Overlap of spheres along bones that should never meet (arms in the torso, legs in each other)."""
        s = self.spheres
        if s is None:
            return joints.new_zeros(joints.shape[0])
        a, b = joints[:, s["start"]], joints[:, s["end"]]
        centres = a + s["t"].to(joints.dtype)[None, :, None] * (b - a)  # (B, N, 3)
        i, k = s["pairs"]
        d = (centres[:, i] - centres[:, k]).norm(dim=-1)
        r = s["radius"].to(joints.dtype)
        return (torch.relu(r[i] + r[k] - d) ** 2).sum(1)


def _body_spheres(model: BodyModel) -> dict[str, Tensor] | None:
    """Three spheres per limb bone, radius from the mean body's vertices around the bone."""
    names = model.joint_names
    limbs = [n for n in names if any(n.endswith(s) for s in ("hip", "knee", "shoulder", "elbow"))]
    if not limbs:
        return None
    J = model.num_joints
    v = shaped(torch.zeros(1, 1), model.v_template.double(), model.shapedirs.double())[0]
    joints = model.J_regressor.double() @ v
    start, end, t, radius, bone = [], [], [], [], []
    for n in limbs:
        j = names.index(n)
        children = [c for c in range(J) if int(model.parents[c]) == j]
        if not children:
            continue
        c = children[0]
        mine = model.weights[:, j] > 0.5
        seg = joints[c] - joints[j]
        rel = v[mine] - joints[j]
        along = (rel @ seg / (seg @ seg)).clamp(0, 1)
        dist = (rel - along[:, None] * seg).norm(dim=-1)
        r = float(dist.median()) if len(dist) else 0.04
        for f in (0.2, 0.5, 0.8):
            start.append(j), end.append(c), t.append(f), radius.append(0.8 * r), bone.append(j)
    # the torso as spheres from the pelvis up the spine, wide enough to stop arms passing through
    torso = [names.index(n) for n in ("pelvis", "spine1", "spine2", "spine3", "neck") if n in names]
    for a, b in zip(torso, torso[1:]):
        mine = model.weights[:, a] > 0.5
        r = float((v[mine, :2] - joints[a, :2]).norm(dim=-1).median()) if mine.any() else 0.1
        start.append(a), end.append(b), t.append(0.5), radius.append(0.6 * r), bone.append(-1)
    bone = torch.tensor(bone)
    side = torch.tensor([0 if b < 0 else (1 if names[b].startswith("left") else 2) for b in bone.tolist()])
    arm = torch.tensor([b >= 0 and ("shoulder" in names[b] or "elbow" in names[b]) for b in bone.tolist()])
    i, k = torch.triu_indices(len(bone), len(bone), 1)
    # never between parts of one limb chain, nor a thigh against the torso (they meet at the hip)
    same_chain = (side[i] == side[k]) & (side[i] > 0) & (arm[i] == arm[k])
    hip_torso = ((bone[i] < 0) & ~arm[k] & (side[k] > 0)) | ((bone[k] < 0) & ~arm[i] & (side[i] > 0))
    keep = ~same_chain & ~hip_torso & ~((bone[i] < 0) & (bone[k] < 0))
    # an upper arm meets the torso at the shoulder: only its outer two spheres count against it
    tt = torch.tensor(t)
    shoulder_root = torch.tensor([b >= 0 and "shoulder" in names[b] for b in bone.tolist()]) & (tt < 0.3)
    keep &= ~((shoulder_root[i] & (bone[k] < 0)) | (shoulder_root[k] & (bone[i] < 0)))
    return {"start": torch.tensor(start), "end": torch.tensor(end), "t": tt, "radius": torch.tensor(radius),
            "pairs": (i[keep], k[keep])}
