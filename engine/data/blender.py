"""NeRF-synthetic / Blender format: transforms_{train,val,test}.json beside RGBA renders."""
from __future__ import annotations

import math
from pathlib import Path

from engine.data.cameras import Intrinsics, check_pose, opengl_to_opencv
from engine.data.images import image_size
from engine.data.dataset import Dataset, Frame
from engine.errors import InputError
from engine.io import read_json, require_dir, resolve_inside

DEFAULT_SPLITS = ("train", "test")  # the Blender val images are often not distributed


def _field(obj, key: str, source: Path, what: str):
    if not isinstance(obj, dict) or key not in obj:
        raise InputError(source, f"missing field '{key}' in {what}")
    return obj[key]


def _image_path(root: Path, rel: str, source: Path) -> Path:
    p = resolve_inside(root, rel, source, suffixes=("", ".png"))  # Blender's paths often leave out .png
    if not p.is_file():
        raise InputError(source, f"image file {rel!r} not found (looked for {p})")
    return p


def load_blender(root: Path, splits: tuple[str, ...] = DEFAULT_SPLITS,
                 background=(1.0, 1.0, 1.0)) -> Dataset:
    """Load the given splits of a Blender-format scene; RGBA is composited on `background`."""
    root = require_dir(root, "dataset folder")
    frames: list[Frame] = []
    split_idx: dict[str, list[int]] = {}
    for split in splits:
        intr = None  # one camera per split file
        src = root / f"transforms_{split}.json"
        meta = read_json(src)
        angle = _field(meta, "camera_angle_x", src, "the file")
        entries = _field(meta, "frames", src, "the file")
        if not isinstance(entries, list) or not entries:
            raise InputError(src, "'frames' must be a non-empty list")
        try:
            angle = float(angle)
        except (TypeError, ValueError):
            raise InputError(src, f"'camera_angle_x' is not a number: {angle!r}") from None
        if not 0 < angle < math.pi:
            raise InputError(src, f"'camera_angle_x' = {angle} is not a field of view in (0, π)")
        split_idx[split] = []
        seen: set[Path] = set()
        for k, e in enumerate(entries):
            what = f"frame {k}"
            path = _image_path(root, _field(e, "file_path", src, what), src)
            c2w = check_pose(_field(e, "transform_matrix", src, what), f"{src} ({what})")
            if intr is None:
                w, h = image_size(path)
                focal = 0.5 * w / math.tan(0.5 * angle)
                intr = Intrinsics(w, h, focal, focal, w / 2.0, h / 2.0).check(src)
            if path in seen:
                raise InputError(src, f"{what} repeats the image {e['file_path']!r}")
            seen.add(path)
            split_idx[split].append(len(frames))
            frames.append(Frame(f"{split}/{path.name}", path, intr, opengl_to_opencv(c2w)))
    scene = Dataset(root, "blender", frames, split_idx, tuple(float(b) for b in background))
    scene.check_image_sizes()
    return scene
