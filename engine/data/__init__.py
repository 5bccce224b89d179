"""Datasets and cameras. One convention: camera-to-world poses with OpenCV axes."""
from __future__ import annotations

from pathlib import Path

from engine.data.cameras import Intrinsics, look_at, opencv_to_opengl, opengl_to_opencv
from engine.data.dataset import Dataset, Frame
from engine.errors import InputError
from engine.io import require_dir

FORMATS = ("auto", "blender", "nerfstudio", "colmap", "llff")


def detect_format(path: Path) -> str:
    path = Path(path)
    if path.is_file():
        if path.suffix == ".json":
            return "nerfstudio"
        raise InputError(path, "not a dataset (give a folder or a transforms.json)")
    require_dir(path, "dataset folder")
    if (path / "transforms.json").is_file():
        return "nerfstudio"
    if (path / "transforms_train.json").is_file():
        return "blender"
    if (path / "poses_bounds.npy").is_file():
        return "llff"
    for cand in (path, path / "sparse" / "0", path / "sparse", path / "colmap" / "sparse" / "0"):
        if any((cand / f"cameras{ext}").is_file() for ext in (".bin", ".txt")):
            return "colmap"
    raise InputError(path, "no dataset found (expected transforms.json, transforms_train.json, "
                           "poses_bounds.npy or a COLMAP sparse model)")


def load_dataset(path: Path, fmt: str = "auto", downscale: float | None = None,
                 background=(1.0, 1.0, 1.0), strict: bool = False) -> Dataset:
    """Load any supported dataset, downscaled by `downscale` (cached copies outside it).

    None keeps the images as stored; for LLFF, whose poses describe full-resolution photos
    that are rarely distributed, None means the largest images_N folder and a number is
    relative to the full resolution (the literature's "fern at factor 8" is 504×378). `strict`
    refuses a transforms.json listing frames whose image is missing (else they are skipped, with
    a line in `Dataset.warnings`).
    """
    from engine.data.blender import load_blender
    from engine.data.colmap import load_colmap
    from engine.data.llff import load_llff
    from engine.data.nerfstudio import load_nerfstudio

    path = Path(path)
    if downscale is not None and not (isinstance(downscale, (int, float)) and 0 < downscale <= 256):
        raise InputError(None, f"--downscale {downscale}: must be a number above 0 and at most 256")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "llff":
        return load_llff(path, factor=downscale)
    if fmt == "blender":
        scene = load_blender(path, background=background)
    elif fmt == "nerfstudio":
        scene = load_nerfstudio(path, background=background, strict=strict)
    elif fmt == "colmap":
        scene = load_colmap(path)
    else:
        raise InputError(None, f"unknown dataset format {fmt!r} (known: {', '.join(FORMATS)})")
    return scene if downscale is None else scene.downscaled(downscale)


__all__ = ["FORMATS", "Frame", "Intrinsics", "Dataset", "detect_format", "load_dataset", "look_at",
           "opencv_to_opengl", "opengl_to_opencv"]
