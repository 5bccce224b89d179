"""Photos of distorted cameras resampled to pinhole ones, for renderers that project pinhole
cameras (the Gaussian rasterizer). Like COLMAP's image_undistorter with no blank pixels: the same
image size and principal point, the focal length scaled so that every output pixel sees the photo."""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from engine.data.cameras import Intrinsics


def edge_pixels(width: int, height: int, samples: int = 256) -> np.ndarray:
    """(4·samples, 2) points along the image's border, in pixels."""
    t = np.linspace(0.0, 1.0, samples)
    w, h = width, height
    return np.concatenate([np.stack([t * w, np.zeros_like(t)], 1), np.stack([t * w, np.full_like(t, h)], 1),
                           np.stack([np.zeros_like(t), t * h], 1), np.stack([np.full_like(t, w), t * h], 1)])


def pinhole_for(intr: Intrinsics, samples: int = 256) -> Intrinsics:
    """The pinhole camera of the same size and principal point whose every pixel maps inside the
    distorted photo, as wide as that allows (the largest view with no blank pixels)."""
    if not intr.has_distortion:
        return dataclasses.replace(intr, model="PINHOLE", dist=())
    w, h = intr.width, intr.height
    edge = edge_pixels(w, h, samples)

    def inside(scale: float) -> bool:
        xy = (edge - [intr.cx, intr.cy]) / ([intr.fx * scale, intr.fy * scale])
        uv = intr.distort(xy) * [intr.fx, intr.fy] + [intr.cx, intr.cy]
        return bool(np.isfinite(uv).all() and (uv >= -1e-6).all() and (uv[:, 0] <= w + 1e-6).all()
                    and (uv[:, 1] <= h + 1e-6).all())

    lo, hi = 0.25, 4.0  # focal scales: a wider view is a smaller one
    if not inside(hi):
        raise ValueError(f"lens distortion {intr.dist} leaves no valid pinhole view")
    for _ in range(40):
        mid = (lo * hi) ** 0.5
        lo, hi = (lo, mid) if inside(mid) else (mid, hi)
    return Intrinsics(w, h, intr.fx * hi, intr.fy * hi, intr.cx, intr.cy)


def undistort_image(img: np.ndarray, src: Intrinsics, dst: Intrinsics) -> np.ndarray:
    """Resample `img` (H, W, C) float32 seen by `src` as `dst` would see it (bilinear; pixel centres
    at +0.5, as everywhere in the engine)."""
    from scipy.ndimage import map_coordinates

    ys, xs = np.mgrid[0:dst.height, 0:dst.width].astype(np.float64) + 0.5
    xy = np.stack([(xs - dst.cx) / dst.fx, (ys - dst.cy) / dst.fy], -1)
    uv = src.distort(xy) * [src.fx, src.fy] + [src.cx, src.cy] - 0.5
    coords = [uv[..., 1], uv[..., 0]]
    return np.stack([map_coordinates(img[..., c], coords, order=1, mode="nearest") for c in range(img.shape[-1])],
                    -1).astype(np.float32)


def undistorted_copy(path: Path, src: Intrinsics, dst: Intrinsics) -> Path:
    """Path of the photo at `path` (seen by `src`) resampled to `dst`, made once and cached outside
    the dataset."""
    from engine.data.images import cache_dir, read_image
    from engine.io import write_png

    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{src}|{dst}".encode()).hexdigest()[:20]
    out = cache_dir() / "undistorted" / f"{key}.png"
    if out.is_file():
        return out
    img = undistort_image(read_image(path), src, dst)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png((np.clip(img, 0, 1) * 255).round().astype(np.uint8), out)
    return out
