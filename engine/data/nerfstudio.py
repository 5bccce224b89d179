"""nerfstudio's transforms.json: OpenGL camera-to-world poses, shared or per-frame intrinsics."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from engine.data.cameras import Intrinsics, check_pose, opencv_to_opengl, opengl_to_opencv
from engine.data.images import image_size
from engine.data.ply import read_ply_vertices
from engine.data.dataset import Dataset, Frame, every_nth_split
from engine.errors import InputError
from engine.io import atomic_write_json, read_json, require_dir, resolve_inside

_DIST_KEYS = {"PINHOLE": (), "SIMPLE_PINHOLE": (), "SIMPLE_RADIAL": ("k1",), "OPENCV": ("k1", "k2", "p1", "p2")}


def _number(d: dict, key: str, source: str, default=None) -> float:
    if key not in d:
        if default is None:
            raise InputError(source, f"missing field '{key}'")
        return default
    try:
        v = float(d[key])
    except (TypeError, ValueError, OverflowError):
        raise InputError(source, f"field '{key}' is not a number: {d[key]!r:.80}") from None
    if not math.isfinite(v):
        raise InputError(source, f"field '{key}' is not finite: {v}")
    return v


def _size(d: dict, key: str, source: str) -> int:
    v = _number(d, key, source)
    if v != int(v) or not 1 <= v <= 1 << 16:
        raise InputError(source, f"field '{key}' = {v:g} is not an image size in pixels")
    return int(v)


def _intrinsics(meta: dict, frame: dict, image: Path, source: str) -> Intrinsics:
    get = {**meta, **frame}  # per-frame values override the shared ones, as in nerfstudio
    model = get.get("camera_model", "OPENCV")
    if not isinstance(model, str) or model not in _DIST_KEYS:
        raise InputError(source, f"unsupported camera_model {model!r:.80} (supported: {', '.join(_DIST_KEYS)})")
    if "w" in get and "h" in get:
        w, h = _size(get, "w", source), _size(get, "h", source)
    else:
        w, h = image_size(image)
    fx = _number(get, "fl_x", source)
    fy = _number(get, "fl_y", source, default=fx)
    cx, cy = _number(get, "cx", source, w / 2.0), _number(get, "cy", source, h / 2.0)
    if model == "OPENCV" and any(_number(get, k, source, 0.0) for k in ("k3", "k4")):
        raise InputError(source, "k3/k4 distortion is not supported (use k1, k2, p1, p2)")
    dist = tuple(_number(get, k, source, 0.0) for k in _DIST_KEYS[model])
    if not any(dist):
        model, dist = "PINHOLE", ()
    elif model == "SIMPLE_PINHOLE":
        model = "PINHOLE"
    return Intrinsics(w, h, fx, fy, cx, cy, model, dist).check(source)


def load_nerfstudio(path: Path, background=(1.0, 1.0, 1.0)) -> Dataset:
    """Load a transforms.json (or the folder holding one)."""
    path = Path(path)
    src = path / "transforms.json" if path.is_dir() else path
    root = require_dir(src.parent, "dataset folder")
    meta = read_json(src)
    if not isinstance(meta, dict) or "frames" not in meta:
        raise InputError(src, "missing field 'frames'")
    entries = meta["frames"]
    if not isinstance(entries, list) or not entries:
        raise InputError(src, "'frames' must be a non-empty list")
    frames = []
    for k, e in enumerate(entries):
        where = f"{src} (frame {k})"
        if not isinstance(e, dict) or "file_path" not in e or "transform_matrix" not in e:
            raise InputError(where, "frame needs 'file_path' and 'transform_matrix'")
        image = resolve_inside(root, e["file_path"], src)
        if not image.is_file():
            raise InputError(src, f"image file {e['file_path']!r} not found")
        c2w = opengl_to_opencv(check_pose(e["transform_matrix"], where))
        frames.append(Frame(Path(e["file_path"]).as_posix().removeprefix("./"), image,
                            _intrinsics(meta, e, image, where), c2w))
    frames.sort(key=lambda f: f.name)
    names = [f.name for f in frames]
    if len(set(names)) != len(names):
        raise InputError(src, "two frames use the same file_path")
    if any(k in meta for k in ("train_filenames", "val_filenames", "test_filenames")):
        index = {n: i for i, n in enumerate(names)}
        splits = {}
        for split in ("train", "val", "test"):
            listed = meta.get(f"{split}_filenames", [])
            if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
                raise InputError(src, f"'{split}_filenames' must be a list of file names")
            missing = [n for n in listed if str(n).removeprefix("./") not in index]
            if missing:
                raise InputError(src, f"{split}_filenames names {missing[0]!r}, which is not a frame")
            splits[split] = [index[str(n).removeprefix("./")] for n in listed]
    else:
        splits = every_nth_split(len(frames))
    scene = Dataset(root, "nerfstudio", frames, splits, tuple(float(b) for b in background))
    if meta.get("ply_file_path"):
        ply = resolve_inside(root, meta["ply_file_path"], src)
        v = read_ply_vertices(ply)
        if not all(k in v for k in "xyz"):
            raise InputError(ply, "points need x, y, z properties")
        scene.points = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float64)
        if not np.isfinite(scene.points).all():
            raise InputError(ply, "points with NaN or infinite coordinates")
        if all(k in v for k in ("red", "green", "blue")):
            scene.point_colors = np.stack([v["red"], v["green"], v["blue"]], axis=1).astype(np.uint8)
    scene.check_image_sizes()
    return scene


def write_nerfstudio(path: Path, frames: list[Frame], root: Path, ply_file: str | None = None) -> None:
    """Write frames (OpenCV c2w) as a nerfstudio transforms.json; image paths relative to `root`.

    Intrinsics shared by every frame go to the top level, as nerfstudio's own tools write them.
    """
    def intr_dict(i: Intrinsics) -> dict:
        d = {"camera_model": "OPENCV" if i.model != "PINHOLE" else "PINHOLE",
             "w": i.width, "h": i.height, "fl_x": i.fx, "fl_y": i.fy, "cx": i.cx, "cy": i.cy}
        if i.model == "SIMPLE_RADIAL":
            d.update(k1=i.dist[0], k2=0.0, p1=0.0, p2=0.0)
        elif i.model == "OPENCV":
            d.update(zip(("k1", "k2", "p1", "p2"), i.dist))
        return d

    shared = len({f.intrinsics for f in frames}) == 1
    out = dict(intr_dict(frames[0].intrinsics)) if shared else {}
    out["frames"] = []
    for f in frames:
        e = {"file_path": f.image_path.resolve().relative_to(root.resolve()).as_posix(),
             "transform_matrix": opencv_to_opengl(f.c2w).tolist()}
        if not shared:
            e.update(intr_dict(f.intrinsics))
        out["frames"].append(e)
    out["applied_transform"] = np.eye(4)[:3].tolist()
    if ply_file:
        out["ply_file_path"] = ply_file
    atomic_write_json(path, out)
