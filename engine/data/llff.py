"""LLFF scenes: poses_bounds.npy (N×17) beside images/, images_4/, images_8/ ... folders."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from engine.data.cameras import Intrinsics, check_pose, opengl_to_opencv
from engine.data.images import image_size, list_images
from engine.data.dataset import Dataset, Frame, every_nth_split
from engine.errors import InputError
from engine.io import contained, require_dir


def _image_folders(root: Path) -> dict[int, Path]:
    """{downscale factor: folder} for images/ (factor 1) and images_N/."""
    out = {}
    for p in root.iterdir():
        m = re.fullmatch(r"images(?:_(\d+))?", p.name)
        if p.is_dir() and m:
            out[int(m.group(1) or 1)] = p
    return out


def load_llff(root: Path, factor: float | None = None) -> Dataset:
    """Load an LLFF scene. `factor` is relative to the full-resolution photos that the poses'
    hwf describe (fern at factor 8 is 504×378); the closest pre-made images_N folder is used
    and any remaining factor is applied through the downscale cache. None picks the largest
    images available."""
    root = require_dir(root, "dataset folder")
    src = root / "poses_bounds.npy"
    if not src.is_file():
        raise InputError(src, "file not found")
    try:
        arr = np.load(src, allow_pickle=False)
    except Exception as e:
        raise InputError(src, f"not a readable .npy array ({e.__class__.__name__}: {e})") from None
    if arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] == 0 or not np.issubdtype(arr.dtype, np.number):
        raise InputError(src, f"expected an N×17 numeric array, got shape {arr.shape} of {arr.dtype}")
    arr = arr.astype(np.float64)
    folders = _image_folders(root)
    if not folders:
        raise InputError(root, "no images/ or images_N/ folder beside poses_bounds.npy")
    if factor is None:
        k = min(folders)
    else:
        usable = [k for k in folders if k <= factor]
        k = max(usable) if usable else min(folders)
        if k > factor:
            raise InputError(root, f"cannot upscale: the largest images are images_{k}, asked for factor {factor:g}")
    folder = folders[k]
    files = list_images(folder)
    for f in files:  # a photo may be a link, but not to a file outside the dataset
        contained(root, f, folder, f.name)
    if len(files) != len(arr):
        raise InputError(src, f"has {len(arr)} poses but {folder} has {len(files)} images")
    poses = arr[:, :15].reshape(-1, 3, 5)
    hwf, near_far = poses[:, :, 4], arr[:, 15:17]
    if not np.all(np.isfinite(arr)):
        raise InputError(src, "contains NaN or infinite values")
    if np.any(hwf <= 0):
        raise InputError(src, "image height, width and focal (column 4) must be positive")
    if np.any(near_far[:, 0] <= 0) or np.any(near_far[:, 1] <= near_far[:, 0]):
        raise InputError(src, "depth bounds (last two columns) must be 0 < near < far for every view")
    w_img, h_img = image_size(files[0])
    frames = []
    for i, f in enumerate(files):
        h, w, focal = hwf[i]
        sx, sy = w_img / w, h_img / h
        if abs(sx - sy) > 0.01 * sx:
            raise InputError(f, f"image is {w_img}x{h_img}, not the aspect ratio of the poses' {w:g}x{h:g}")
        intr = Intrinsics(w_img, h_img, focal * sx, focal * sy, w_img / 2.0, h_img / 2.0).check(src)
        # LLFF stores [down, right, back] camera axes; OpenGL is [right, up, back].
        m = poses[i, :, :4]
        c2w_gl = check_pose(np.stack([m[:, 1], -m[:, 0], m[:, 2], m[:, 3]], axis=1), f"{src} (pose {i})")
        frames.append(Frame(f.name, f, intr, opengl_to_opencv(c2w_gl)))
    scene = Dataset(root, "llff", frames, every_nth_split(len(frames)), near_far=near_far)
    scene.check_image_sizes()
    if factor is not None and factor / k != 1:
        scene = scene.downscaled(factor / k)
    return scene
