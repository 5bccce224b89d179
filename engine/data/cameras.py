"""Cameras: intrinsics models and the one place where axis conventions are converted.

Convention used everywhere in lumen3d: poses are **camera-to-world** 4×4 matrices with
**OpenCV camera axes** (x right, y down, z forward). Pixel (0, 0) is the top-left corner of
the first pixel, so its centre is (0.5, 0.5) — COLMAP's convention.

Formats that use OpenGL axes (x right, y up, z backward: Blender, nerfstudio) convert with
:func:`opengl_to_opencv` / :func:`opencv_to_opengl`, and nothing else in the code base flips
axes.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from engine.errors import InputError

# Number of distortion coefficients of each supported model.
MODELS = {"PINHOLE": 0, "SIMPLE_RADIAL": 1, "OPENCV": 4}

_FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])


def opengl_to_opencv(c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world with OpenGL camera axes → OpenCV camera axes. Shape (..., 4, 4)."""
    return np.asarray(c2w, dtype=np.float64) @ _FLIP_YZ


def opencv_to_opengl(c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world with OpenCV camera axes → OpenGL camera axes. Shape (..., 4, 4)."""
    return np.asarray(c2w, dtype=np.float64) @ _FLIP_YZ


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics with optional lens distortion, in pixels.

    model: PINHOLE (no distortion), SIMPLE_RADIAL (k1) or OPENCV (k1, k2, p1, p2).
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    model: str = "PINHOLE"
    dist: tuple[float, ...] = ()

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown camera model {self.model!r} (known: {', '.join(MODELS)})")
        if len(self.dist) != MODELS[self.model]:
            raise ValueError(f"{self.model} takes {MODELS[self.model]} distortion coefficients, got {len(self.dist)}")
        for name in ("width", "height"):
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("fx", "fy", "cx", "cy"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "dist", tuple(float(d) for d in self.dist))

    @property
    def K(self) -> np.ndarray:
        """3×3 calibration matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def has_distortion(self) -> bool:
        return any(d != 0.0 for d in self.dist)

    def check(self, source: str | os.PathLike | None) -> "Intrinsics":
        """Raise InputError naming `source` unless the values are usable."""
        values = [self.fx, self.fy, self.cx, self.cy, *self.dist]
        if not all(np.isfinite(values)):
            raise InputError(source, f"camera intrinsics are not finite: {values}")
        if self.width <= 0 or self.height <= 0:
            raise InputError(source, f"camera size {self.width}x{self.height} is not positive")
        if self.fx <= 0 or self.fy <= 0:
            raise InputError(source, f"focal length ({self.fx:g}, {self.fy:g}) is not positive")
        return self

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """The same camera for an image resized to width × height (distortion is scale-free)."""
        sx, sy = width / self.width, height / self.height
        return dataclasses.replace(self, width=int(width), height=int(height), fx=self.fx * sx,
                                   fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy)

    def distort(self, xy: np.ndarray) -> np.ndarray:
        """Apply the lens distortion to normalised image coordinates. Shape (..., 2)."""
        xy = np.asarray(xy, dtype=np.float64)
        if self.model == "PINHOLE":
            return xy.copy()
        x, y = xy[..., 0], xy[..., 1]
        r2 = x * x + y * y
        if self.model == "SIMPLE_RADIAL":
            radial = 1.0 + self.dist[0] * r2
            return np.stack([x * radial, y * radial], axis=-1)
        k1, k2, p1, p2 = self.dist
        radial = 1.0 + k1 * r2 + k2 * r2 * r2
        xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
        yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
        return np.stack([xd, yd], axis=-1)

    def undistort(self, xy_distorted: np.ndarray, iterations: int = 20) -> np.ndarray:
        """Invert :meth:`distort` by fixed-point iteration (as COLMAP does). Shape (..., 2)."""
        target = np.asarray(xy_distorted, dtype=np.float64)
        xy = target.copy()
        if self.model == "PINHOLE":
            return xy
        for _ in range(iterations):
            xy = xy - (self.distort(xy) - target)
        return xy

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Camera-space points (OpenCV axes, z forward) → pixel coordinates. (..., 3) → (..., 2)."""
        p = np.asarray(points_cam, dtype=np.float64)
        xy = self.distort(p[..., :2] / p[..., 2:3])
        return np.stack([self.fx * xy[..., 0] + self.cx, self.fy * xy[..., 1] + self.cy], axis=-1)

    def pixel_directions(self, uv: np.ndarray) -> np.ndarray:
        """Pixel coordinates → camera-space ray directions with z = 1. (..., 2) → (..., 3)."""
        uv = np.asarray(uv, dtype=np.float64)
        xy = np.stack([(uv[..., 0] - self.cx) / self.fx, (uv[..., 1] - self.cy) / self.fy], axis=-1)
        xy = self.undistort(xy)
        return np.concatenate([xy, np.ones_like(xy[..., :1])], axis=-1)


def check_pose(c2w, source: str | os.PathLike | None, tol: float = 1e-3) -> np.ndarray:
    """Validate a camera-to-world matrix (3×4 or 4×4) and return it as a clean 4×4 float64.

    Refuses NaN/inf, a bottom row other than [0, 0, 0, 1], and rotations that are not
    rigid (scale, shear or reflection beyond `tol`). The rotation is re-orthonormalised
    so that float32 rounding in the file does not accumulate downstream.
    """
    try:
        m = np.asarray(c2w, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(source, "pose is not a numeric matrix") from None
    if m.shape not in ((3, 4), (4, 4)):
        raise InputError(source, f"pose has shape {m.shape}, expected 3x4 or 4x4")
    if not np.all(np.isfinite(m)):
        raise InputError(source, "pose contains NaN or infinite values")
    if m.shape == (4, 4) and not np.allclose(m[3], [0, 0, 0, 1], atol=tol):
        raise InputError(source, f"pose bottom row is {m[3].tolist()}, expected [0, 0, 0, 1]")
    R = m[:3, :3]
    err = np.abs(R.T @ R - np.eye(3)).max()
    if err > tol or np.linalg.det(R) < 0:
        raise InputError(source, f"pose rotation is not rigid (|RᵀR − I| = {err:.3g}, det = {np.linalg.det(R):.3g})")
    U, _, Vt = np.linalg.svd(R)
    out = np.eye(4)
    out[:3, :3] = U @ Vt
    out[:3, 3] = m[:3, 3]
    return out


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world (OpenCV axes) of a camera at `eye` looking at `target` with `up` up."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to the up vector")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return c2w


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) → 3×3 rotation matrix."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """3×3 rotation matrix → unit quaternion (w, x, y, z) with w ≥ 0."""
    R = np.asarray(R, dtype=np.float64)
    K = np.array([
        [R[0, 0] - R[1, 1] - R[2, 2], 0, 0, 0],
        [R[1, 0] + R[0, 1], R[1, 1] - R[0, 0] - R[2, 2], 0, 0],
        [R[2, 0] + R[0, 2], R[2, 1] + R[1, 2], R[2, 2] - R[0, 0] - R[1, 1], 0],
        [R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1], R[0, 0] + R[1, 1] + R[2, 2]],
    ]) / 3.0
    vals, vecs = np.linalg.eigh(K)
    x, y, z, w = vecs[:, np.argmax(vals)]
    q = np.array([w, x, y, z])
    return q if q[0] >= 0 else -q
