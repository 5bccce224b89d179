"""A distorted capture made from a pinhole one, for tests and benchmarks: no dataset here has a
distorted camera, and instant-ngp and nerfstudio captures from phones usually do."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from engine.data.cameras import Intrinsics


def distort_image(img: np.ndarray, pinhole: Intrinsics, lens: Intrinsics) -> np.ndarray:
    """The inverse of :func:`undistort_image`: what a camera with `lens` sees of a photo taken with
    `pinhole` (same pose). Pixels whose ray leaves the photo repeat its edge."""
    from scipy.ndimage import map_coordinates

    ys, xs = np.mgrid[0:lens.height, 0:lens.width].astype(np.float64) + 0.5
    xy = lens.undistort(np.stack([(xs - lens.cx) / lens.fx, (ys - lens.cy) / lens.fy], -1))
    uv = xy * [pinhole.fx, pinhole.fy] + [pinhole.cx, pinhole.cy] - 0.5
    coords = [uv[..., 1], uv[..., 0]]
    return np.stack([map_coordinates(img[..., c], coords, order=1, mode="nearest") for c in range(img.shape[-1])],
                    -1).astype(np.float32)


def _lens_inside(pinhole: Intrinsics, model: str, dist: tuple[float, ...]) -> Intrinsics:
    """The `model` lens with `dist`, its focal lengths scaled up just enough that everything it sees
    lies inside the pinhole photo (so the synthetic photo has no repeated edges)."""
    from engine.data.undistort import edge_pixels

    w, h = pinhole.width, pinhole.height
    edge = edge_pixels(w, h)

    def lens(scale: float) -> Intrinsics:
        return dataclasses.replace(pinhole, fx=pinhole.fx * scale, fy=pinhole.fy * scale, model=model, dist=dist)

    def inside(scale: float) -> bool:
        k = lens(scale)
        uv = k.undistort((edge - [k.cx, k.cy]) / [k.fx, k.fy]) * [pinhole.fx, pinhole.fy] + [pinhole.cx, pinhole.cy]
        return bool(np.isfinite(uv).all() and (uv >= 0).all() and (uv[:, 0] <= w).all() and (uv[:, 1] <= h).all())

    lo, hi = 0.25, 4.0
    for _ in range(40):
        mid = (lo * hi) ** 0.5
        lo, hi = (lo, mid) if inside(mid) else (mid, hi)
    return lens(max(hi, 1.0))


def write_distorted_capture(scene, out: Path, model: str, dist: tuple[float, ...], frames: list[int] | None = None,
                            points: np.ndarray | None = None) -> Path:
    """A nerfstudio capture of `scene`'s pinhole photos as a `model` lens with `dist` would have taken
    them (images/ and transforms.json in `out`; `points` (M, 3) as its point cloud): test data for
    distorted cameras, which no dataset here has. The lens is zoomed just enough to see only what the
    photo holds."""
    from engine.data.nerfstudio import write_nerfstudio
    from engine.data.ply import write_ply_points
    from engine.io import write_png

    (out / "images").mkdir(parents=True, exist_ok=True)
    written = []
    for i in frames if frames is not None else range(len(scene.frames)):
        f = scene.frames[i]
        lens = _lens_inside(f.intrinsics, model, tuple(dist))
        img = distort_image(scene.image_rgba(i), f.intrinsics, lens)
        path = out / "images" / f"{i:04d}.png"
        write_png((np.clip(img, 0, 1) * 255).round().astype(np.uint8), path)
        written.append(dataclasses.replace(f, name=path.name, image_path=path, intrinsics=lens, downscale=1.0))
    ply = None
    if points is not None:
        write_ply_points(out / "points.ply", points, np.full((len(points), 3), 128, np.uint8))
        ply = "points.ply"
    write_nerfstudio(out / "transforms.json", written, out, ply_file=ply)
    return out
