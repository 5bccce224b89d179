"""Cameras as one torch type, and where cameras come from besides datasets: video paths around
a capture (orbit, spiral, focus point) and random views around an object (text-to-3D).

Conventions are those of `engine.data.cameras`: camera-to-world 4×4 with OpenCV axes, pixel
centres at +0.5. A `Cameras` batch keeps each camera's `Intrinsics` (size and lens distortion)
beside the tensors, so ray generation can undo distortion exactly as the datasets describe it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from engine.data.cameras import Intrinsics, look_at


@dataclass
class Cameras:
    """A batch of B cameras on one device.

    c2w: (B, 4, 4) float64 camera-to-world (kept in double so that world-to-camera matrices are
    inverted without float32 rounding); intrinsics: B `Intrinsics` (size, K, distortion).
    """

    c2w: Tensor
    intrinsics: tuple[Intrinsics, ...]

    def __post_init__(self):
        if self.c2w.ndim != 3 or self.c2w.shape[1:] != (4, 4) or len(self.c2w) != len(self.intrinsics):
            raise ValueError(f"Cameras: c2w {tuple(self.c2w.shape)} does not match {len(self.intrinsics)} intrinsics")

    @staticmethod
    def from_c2w(c2w, intrinsics: Intrinsics | list[Intrinsics], device: str | torch.device = "cpu") -> "Cameras":
        """From (4, 4) or (B, 4, 4) numpy/torch poses and one or B intrinsics."""
        m = torch.as_tensor(np.asarray(c2w, dtype=np.float64), dtype=torch.float64, device=device)
        m = m[None] if m.ndim == 2 else m
        intr = (intrinsics,) * len(m) if isinstance(intrinsics, Intrinsics) else tuple(intrinsics)
        return Cameras(m, intr)

    @staticmethod
    def from_frames(frames, device: str | torch.device = "cpu") -> "Cameras":
        """The cameras of dataset frames (`engine.data.Frame`)."""
        return Cameras.from_c2w(np.stack([f.c2w for f in frames]), [f.intrinsics for f in frames], device)

    @staticmethod
    def from_matrix(c2w, K, width: int, height: int, device: str | torch.device = "cpu") -> "Cameras":
        """One pinhole camera from a 3×3 K (the viewer's views)."""
        K = np.asarray(K, dtype=np.float64)
        return Cameras.from_c2w(c2w, Intrinsics(width, height, K[0, 0], K[1, 1], K[0, 2], K[1, 2]), device)

    def __len__(self) -> int:
        return len(self.intrinsics)

    def scaled(self, factor: float) -> "Cameras":
        """The same views at `factor` times the resolution (at least 16 pixels a side)."""
        intr = tuple(i.scaled(max(16, round(i.width * factor)), max(16, round(i.height * factor)))
                     for i in self.intrinsics)
        return Cameras(self.c2w, intr)

    def __getitem__(self, i) -> "Cameras":
        idx = [i] if isinstance(i, int) else list(range(len(self)))[i] if isinstance(i, slice) else list(i)
        return Cameras(self.c2w[idx], tuple(self.intrinsics[k] for k in idx))

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    def to(self, device) -> "Cameras":
        return Cameras(self.c2w.to(device), self.intrinsics)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of a batch whose cameras share one size."""
        sizes = {(k.width, k.height) for k in self.intrinsics}
        if len(sizes) != 1:
            raise ValueError(f"cameras of different sizes in one batch: {sorted(sizes)}")
        return sizes.pop()

    @property
    def K(self) -> Tensor:
        """(B, 3, 3) calibration matrices."""
        return torch.as_tensor(np.stack([k.K for k in self.intrinsics]), dtype=torch.float32, device=self.device)

    @property
    def viewmats(self) -> Tensor:
        """(B, 4, 4) float32 world-to-camera."""
        return torch.linalg.inv(self.c2w).float()

    def rays(self, i: int = 0) -> tuple[Tensor, Tensor]:
        """Camera i's pixel-centre rays, lens distortion undone: origins and unit directions (H·W, 3),
        row-major."""
        k = self.intrinsics[i]
        c2w = self.c2w[i].cpu().numpy()
        u, v = np.meshgrid(np.arange(k.width) + 0.5, np.arange(k.height) + 0.5)
        d = k.pixel_directions(np.stack([u, v], -1)).reshape(-1, 3) @ c2w[:3, :3].T
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        o = np.broadcast_to(c2w[:3, 3], d.shape)
        f32 = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=self.device)  # noqa: E731
        return f32(o), f32(d)


# ------------------------------------------------------------------------------------ camera paths
def focus_point(c2ws: np.ndarray) -> np.ndarray:
    """The point closest (least squares) to every camera's optical axis. c2ws (N, 4, 4) → (3,)."""
    A, b = np.zeros((3, 3)), np.zeros(3)
    for m in c2ws:
        d = m[:3, 2] / np.linalg.norm(m[:3, 2])
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ m[:3, 3]
    return np.linalg.lstsq(A, b, rcond=None)[0]


def camera_path(c2ws: np.ndarray, n: int) -> np.ndarray:
    """A video path: an orbit around the focus point for object-centric captures, a small
    spiral in front of the mean camera for forward-facing ones. (n, 4, 4) OpenCV c2w."""
    focus = focus_point(c2ws)
    fwd = c2ws[:, :3, 2]
    up = -c2ws[:, :3, 1].mean(0)
    up /= np.linalg.norm(up)
    spread = np.degrees(np.arccos(np.clip(fwd @ (fwd.mean(0) / np.linalg.norm(fwd.mean(0))), -1, 1))).max()
    centres = c2ws[:, :3, 3]
    if spread > 45:  # cameras around the object
        rel = centres - focus
        height = float((rel @ up).mean())
        radius = float(np.linalg.norm(rel - np.outer(rel @ up, up), axis=1).mean())
        return orbit_path(focus, up, rel[0], radius, height, n)
    mean = centres.mean(0)  # forward-facing: a circle in the mean image plane
    r = 0.5 * np.linalg.norm(centres - mean, axis=1).mean()
    ax, ay = c2ws[0, :3, 0], c2ws[0, :3, 1]
    return np.stack([look_at(mean + r * (math.cos(t) * ax + math.sin(t) * ay), focus, up)
                     for t in np.linspace(0, 2 * np.pi, n, endpoint=False)])


def orbit_path(focus: np.ndarray, up: np.ndarray, start: np.ndarray, radius: float, height: float,
               n: int) -> np.ndarray:
    """n cameras on a circle of `radius` at `height` above `focus` (along `up`), starting in the
    direction of `start`, all looking at `focus`. (n, 4, 4)."""
    e1 = start - (start @ up) * up
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    return np.stack([look_at(focus + up * height + radius * (math.cos(t) * e1 + math.sin(t) * e2), focus, up)
                     for t in np.linspace(0, 2 * np.pi, n, endpoint=False)])


def sample_orbit_cameras(n: int, width: int, height: int, generator: torch.Generator,
                         radius: tuple[float, float] = (3.0, 3.5), elevation_deg: tuple[float, float] = (-10, 45),
                         fov_deg: tuple[float, float] = (40, 70), up=(0.0, 0.0, 1.0),
                         device: str | torch.device = "cpu", stratified: bool = False) -> tuple[Cameras, Tensor, Tensor]:
    """n random cameras around the origin looking at it (text-to-3D's views): radius, elevation
    and vertical field of view uniform in their ranges, azimuth uniform in [0°, 360°) (with
    `stratified`, camera k's in the k-th of n equal sectors from a random start, so a batch
    surrounds the object). Returns the cameras and their azimuths and elevations in degrees (n,),
    for view-dependent prompts."""
    u = torch.rand(n, 4, generator=generator, dtype=torch.float64)
    lerp = lambda r, x: r[0] + (r[1] - r[0]) * x  # noqa: E731
    rad, elev, fov, azim = lerp(radius, u[:, 0]), lerp(elevation_deg, u[:, 1]), lerp(fov_deg, u[:, 2]), 360 * u[:, 3]
    if stratified:
        azim = (360 * (torch.arange(n, dtype=torch.float64) + u[0, 3]) / n) % 360
    c2ws, intr = [], []
    for r, e, f, a in zip(rad.tolist(), elev.tolist(), fov.tolist(), azim.tolist()):
        e_, a_ = math.radians(e), math.radians(a)
        eye = r * np.array([math.cos(e_) * math.cos(a_), math.cos(e_) * math.sin(a_), math.sin(e_)])
        c2ws.append(look_at(eye, np.zeros(3), up))
        focal = 0.5 * height / math.tan(math.radians(f) / 2)
        intr.append(Intrinsics(width, height, focal, focal, width / 2, height / 2))
    return Cameras.from_c2w(np.stack(c2ws), intr, device), azim.float(), elev.float()
