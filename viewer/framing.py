"""Where the viewer's camera goes: framed on the content, from one of its cameras, or given.

A `View` is a pinhole camera in the engine's one convention (camera-to-world, OpenCV axes),
so a view can be handed to Open3D, to our rasterizer, or compared with a dataset's frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.data.cameras import Intrinsics, look_at
from viewer.content import Cameras, Gaussians, Item, Mesh, Points, Sequence


@dataclass
class View:
    K: np.ndarray  # (3, 3)
    c2w: np.ndarray  # (4, 4) camera-to-world, OpenCV axes
    width: int
    height: int

    @property
    def w2c(self) -> np.ndarray:
        return np.linalg.inv(self.c2w)

    def project(self, xyz: np.ndarray) -> np.ndarray:
        """(N, 3) world points → (N, 2) pixel coordinates (x right, y down)."""
        cam = (np.asarray(xyz, np.float64) - self.c2w[:3, 3]) @ self.c2w[:3, :3]
        uv = cam @ self.K.T
        return uv[:, :2] / uv[:, 2:3]


def pinhole(width: int, height: int, fov_deg: float) -> np.ndarray:
    """K for a vertical field of view."""
    f = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float64)


def content_bounds(items: list[Item]) -> tuple[np.ndarray, np.ndarray]:
    """Robust box around everything shown: splat centres and points by their 1st–99th
    percentiles (floaters and stray points would otherwise set the zoom), meshes and body
    sequences whole, camera centres whole."""
    pts = []
    for it in items:
        if isinstance(it, Gaussians):
            import torch

            keep = (torch.sigmoid(it.params["opacity_logits"].detach().float()) > 0.1).numpy()
            if not keep.any():
                keep[:] = True
            xyz = it.params["means"].detach().double().numpy()[keep]
            # padded by a typical splat's 3σ reach, which matters when there are few and large ones
            pad = 3 * float(np.median(np.exp(it.params["log_scales"].detach().double().numpy()[keep]).max(1)))
            box = _robust(xyz)
            pts.append(np.concatenate([box.min(0, keepdims=True) - pad, box.max(0, keepdims=True) + pad]))
        elif isinstance(it, Points):
            pts.append(_robust(np.asarray(it.xyz, np.float64)))
        elif isinstance(it, Mesh):
            from viewer.mesh_files import mesh_points

            pts.append(mesh_points(it.path))
        elif isinstance(it, Cameras):
            pts.append(it.c2w[:, :3, 3])
        elif isinstance(it, Sequence):
            v = it.seq.vertices.reshape(-1, 3)
            pts.append(np.stack([v.min(0), v.max(0)]))
    pts = [p for p in pts if len(p)]
    if not pts:
        return -np.ones(3), np.ones(3)
    allp = np.concatenate(pts)
    return allp.min(0), allp.max(0)


def _robust(xyz: np.ndarray) -> np.ndarray:
    if len(xyz) < 50:
        return xyz
    return np.stack([np.percentile(xyz, 1, axis=0), np.percentile(xyz, 99, axis=0)])


def orbit_view(centre: np.ndarray, radius: float, up: np.ndarray, width: int, height: int, fov_deg: float = 50.0,
               azimuth_deg: float = 45.0, elevation_deg: float = 25.0) -> View:
    """Looking at `centre` from outside a sphere of `radius`, which fills the frame."""
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    e1 = np.cross(up, [1.0, 0, 0] if abs(up[0]) < 0.9 else [0, 1.0, 0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    fov = math.radians(min(fov_deg, fov_deg * width / height))
    dist = max(radius, 1e-6) / math.sin(fov / 2) * 1.02
    eye = centre + dist * (math.cos(el) * (math.cos(az) * e1 + math.sin(az) * e2) + math.sin(el) * up)
    return View(pinhole(width, height, fov_deg), look_at(eye, centre, up), width, height)


def camera_view(c2w: np.ndarray, intr: Intrinsics, width: int | None = None, height: int | None = None) -> View:
    """A dataset camera at the output size: its image scaled uniformly to fit and centred, so
    nothing is stretched when the aspect ratios differ."""
    width, height = width or intr.width, height or intr.height
    s = min(width / intr.width, height / intr.height)
    ox, oy = (width - intr.width * s) / 2, (height - intr.height * s) / 2
    K = np.array([[intr.fx * s, 0, intr.cx * s + ox], [0, intr.fy * s, intr.cy * s + oy], [0, 0, 1]], np.float64)
    return View(K, np.asarray(c2w, np.float64), width, height)


def default_view(items: list[Item], up: np.ndarray, width: int, height: int, fov_deg: float = 50.0) -> View:
    """A body sequence fitted through a camera is seen through it; a forward-facing capture
    (all cameras look one way, like LLFF) from behind its cameras; anything else from an
    orbit position 45° round and 25° up."""
    for it in items:
        if isinstance(it, Sequence) and it.seq.K is not None:
            s = it.seq
            return camera_view(s.c2w, Intrinsics(s.width, s.height, s.K[0, 0], s.K[1, 1], s.K[0, 2], s.K[1, 2]),
                               width, height)
    lo, hi = content_bounds(items)
    centre, radius = (lo + hi) / 2, float(np.linalg.norm(hi - lo) / 2)
    cams = [it for it in items if isinstance(it, Cameras)]
    if cams:
        c2w = np.concatenate([c.c2w for c in cams])
        fwd = c2w[:, :3, 2].mean(0)
        if np.linalg.norm(fwd) > 0.8:  # forward-facing
            fwd /= np.linalg.norm(fwd)
            # far enough back to see every camera; the scene lies ahead of them
            centres = c2w[:, :3, 3]
            spread = float(np.linalg.norm(centres - centres.mean(0), axis=1).max())
            back = 1.3 * max(spread, 1e-3 * radius) / math.tan(math.radians(min(fov_deg, fov_deg * width / height)) / 2)
            eye = centres.mean(0) - fwd * back
            return View(pinhole(width, height, fov_deg), look_at(eye, eye + fwd, up), width, height)
    return orbit_view(centre, radius, up, width, height, fov_deg)


def turntable(items: list[Item], up: np.ndarray, width: int, height: int, frames: int, fov_deg: float = 50.0,
              elevation_deg: float = 25.0) -> list[View]:
    lo, hi = content_bounds(items)
    centre, radius = (lo + hi) / 2, float(np.linalg.norm(hi - lo) / 2)
    return [orbit_view(centre, radius, up, width, height, fov_deg, 45.0 + 360.0 * k / frames, elevation_deg)
            for k in range(frames)]
