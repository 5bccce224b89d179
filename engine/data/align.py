"""Similarity alignment of two camera sets and the pose errors after it."""
from __future__ import annotations

import numpy as np


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity with dst ≈ s · R @ src + t (Umeyama 1991). src, dst: (N, 3)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1
    R = U @ D @ Vt
    var_s = (xs ** 2).sum() / len(src)
    s = float(np.trace(np.diag(S) @ D) / var_s) if var_s > 0 else 1.0
    return s, R, mu_d - s * R @ mu_s


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Angle of rotation matrices (..., 3, 3) in degrees."""
    tr = np.trace(R, axis1=-2, axis2=-1)
    return np.degrees(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def pose_errors(c2w_est: np.ndarray, c2w_ref: np.ndarray) -> dict:
    """Align estimated cameras to reference ones by a similarity on the camera centres, then
    report per-camera rotation error (degrees) and centre error (in reference units, and as a
    fraction of the reference cameras' extent). Both (N, 4, 4), OpenCV axes, same order."""
    est, ref = np.asarray(c2w_est, np.float64), np.asarray(c2w_ref, np.float64)
    s, R, t = umeyama(est[:, :3, 3], ref[:, :3, 3])
    centers = s * est[:, :3, 3] @ R.T + t
    rot_err = rotation_angle_deg(np.swapaxes(ref[:, :3, :3], 1, 2) @ (R @ est[:, :3, :3]))
    center_err = np.linalg.norm(centers - ref[:, :3, 3], axis=1)
    extent = float(np.linalg.norm(ref[:, :3, 3] - ref[:, :3, 3].mean(0), axis=1).max())
    return {"rotation_deg": rot_err, "center_error": center_err,
            "center_error_rel": center_err / extent if extent > 0 else center_err,
            "scale": s, "R": R, "t": t}
