"""transforms.json as nerfstudio and instant-ngp write it: OpenGL camera-to-world poses, shared or
per-frame intrinsics.

instant-ngp's flavour (`src/nerf_loader.cu`) is read the way instant-ngp reads it: frames whose image
is missing are skipped (published captures list more frames than they ship), `n_frames` keeps the
first frames in natural order, `sharpness_discard_threshold` drops frames blurrier than their
neighbours, focal lengths may come as `camera_angle_x/y` (radians) or `x_fov/y_fov` (degrees), and
`aabb_scale`, `scale`, `offset` or `aabb` give the scene box (`Dataset.extra["scene_box"]`).
Keys we do not use are named in a warning, never silently dropped.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from engine.data.cameras import Intrinsics, check_pose, opencv_to_opengl, opengl_to_opencv
from engine.data.images import image_size
from engine.data.ply import read_ply_vertices
from engine.data.dataset import Dataset, Frame, every_nth_split
from engine.errors import InputError
from engine.io import atomic_write_json, read_json, require_dir, resolve_inside

_DIST_KEYS = {"PINHOLE": (), "SIMPLE_PINHOLE": (), "SIMPLE_RADIAL": ("k1",), "OPENCV": ("k1", "k2", "p1", "p2")}
_IMAGE_SUFFIXES = ("", ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tga", ".exr")  # instant-ngp's, for paths without one
MIN_FRAMES = 3  # fewer frames than this cannot be split into training and test views
# keys that change nothing for us (provenance, tools' bookkeeping)
_INFORMATIONAL = {"applied_transform", "applied_scale", "colmap_im_id", "orientation_override",
                  "auto_scale_poses_override", "sk_x", "sk_y", "camera_model"}
_USED = {"frames", "fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "k3", "k4", "p1", "p2", "camera_angle_x",
         "camera_angle_y", "x_fov", "y_fov", "is_fisheye", "aabb_scale", "scale", "offset", "aabb", "n_frames",
         "sharpness_discard_threshold", "ply_file_path", "train_filenames", "val_filenames", "test_filenames",
         "file_path", "transform_matrix", "sharpness"}


def _clean(path) -> str:
    """A listed path as one name: Windows separators (as instant-ngp) and a leading './' removed."""
    return str(path).replace("\\", "/").removeprefix("./")


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


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


def _focal(get: dict, w: int, h: int, source: str) -> tuple[float, float]:
    """fl_x/fl_y, else x_fov/y_fov in degrees, else camera_angle_x/y in radians (instant-ngp's order);
    one axis given serves both."""
    def axis(a: str, size: int):
        if f"{a}_fov" in get:
            deg = _number(get, f"{a}_fov", source)
            if not 0 < deg < 180:
                raise InputError(source, f"field '{a}_fov' = {deg:g} is not a field of view in degrees (0, 180)")
            return 0.5 * size / math.tan(math.radians(deg) / 2)
        if f"fl_{a}" in get:
            return _number(get, f"fl_{a}", source)
        if f"camera_angle_{a}" in get:
            rad = _number(get, f"camera_angle_{a}", source)
            if not 0 < rad < math.pi:
                raise InputError(source, f"field 'camera_angle_{a}' = {rad:g} is not a field of view in (0, π)")
            return 0.5 * size / math.tan(rad / 2)
        return None

    fx, fy = axis("x", w), axis("y", h)
    if fx is None and fy is None:
        raise InputError(source, "no focal length (fl_x, x_fov or camera_angle_x)")
    return (fx if fx is not None else fy), (fy if fy is not None else fx)


def _intrinsics(meta: dict, frame: dict, image: Path, source: str) -> Intrinsics:
    get = {**meta, **frame}  # per-frame values override the shared ones, as in nerfstudio and instant-ngp
    model = get.get("camera_model", "OPENCV")
    if model == "OPENCV_FISHEYE" or get.get("is_fisheye"):
        raise InputError(source, "fisheye cameras (OPENCV_FISHEYE, is_fisheye) are not supported; undistort "
                                 "the photos first (e.g. COLMAP's image_undistorter)")
    if not isinstance(model, str) or model not in _DIST_KEYS:
        raise InputError(source, f"unsupported camera_model {model!r:.80} (supported: {', '.join(_DIST_KEYS)})")
    if "w" in get and "h" in get:
        w, h = _size(get, "w", source), _size(get, "h", source)
    else:
        w, h = image_size(image)
    focal_keys = ("fl_x", "fl_y", "x_fov", "y_fov", "camera_angle_x", "camera_angle_y")
    fx, fy = _focal(frame if any(k in frame for k in focal_keys) else meta, w, h, source)  # a frame's own wins
    cx, cy = _number(get, "cx", source, w / 2.0), _number(get, "cy", source, h / 2.0)
    if model == "OPENCV" and any(_number(get, k, source, 0.0) for k in ("k3", "k4")):
        raise InputError(source, "k3/k4 distortion is not supported (use k1, k2, p1, p2)")
    dist = tuple(_number(get, k, source, 0.0) for k in _DIST_KEYS[model])
    if not any(dist):
        model, dist = "PINHOLE", ()
    elif model == "SIMPLE_PINHOLE":
        model = "PINHOLE"
    return Intrinsics(w, h, fx, fy, cx, cy, model, dist).check(source)


def _image(root: Path, rel, src: Path, where: str) -> Path:
    if not isinstance(rel, str):
        raise InputError(where, f"invalid file path {rel!r:.80}")
    return resolve_inside(root, rel.replace("\\", "/"), src, suffixes=_IMAGE_SUFFIXES)  # Windows paths, as instant-ngp


def _listed_frames(meta: dict, root: Path, src: Path, strict: bool,
                   warnings: list[str]) -> list[tuple[int, dict, Path]]:
    """The frames to load, as (index in the file, entry, image path): instant-ngp's n_frames and
    sharpness rules, then the frames whose image exists (all of them with `strict`)."""
    entries = meta["frames"]
    for k, e in enumerate(entries):
        if not isinstance(e, dict) or "file_path" not in e or "transform_matrix" not in e:
            raise InputError(f"{src} (frame {k})", "frame needs 'file_path' and 'transform_matrix'")
    order = sorted(range(len(entries)), key=lambda k: _natural_key(_clean(entries[k]["file_path"])))
    if "n_frames" in meta:
        n = _number(meta, "n_frames", str(src))
        order = order[:max(0, int(n))]
    blurry = set()
    threshold = _number(meta, "sharpness_discard_threshold", str(src), 0.0)
    if threshold > 0:  # instant-ngp: drop a frame at most `threshold` × its neighbours' mean sharpness
        sharp = [_number(entries[k], "sharpness", f"{src} (frame {k})", 1.0) for k in order]
        for i, k in enumerate(order):
            lo, hi = max(0, i - 3), min(i + 3, len(order) - 1)
            mean = sum(sharp[lo:hi]) / max(hi - lo, 1)
            if sharp[i] <= threshold * mean:
                blurry.add(k)
    kept, missing = [], []
    for k in order:
        image = _image(root, entries[k]["file_path"], src, f"{src} (frame {k})")
        if not image.is_file():
            missing.append(str(entries[k]["file_path"]))
        elif k not in blurry:
            kept.append((k, entries[k], image))
    if missing and strict:
        raise InputError(src, f"image file {missing[0]!r} not found ({len(missing)} of {len(entries)} listed "
                              "frames have no image; without --strict they are skipped)")
    if missing:
        warnings.append(f"{src}: skipped {len(missing)} of {len(entries)} listed frames whose image is missing "
                        f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    if blurry:
        warnings.append(f"{src}: skipped {len(blurry)} frames blurrier than sharpness_discard_threshold × their "
                        "neighbours' sharpness")
    if (missing or blurry) and len(kept) < max(MIN_FRAMES, (len(entries) + 1) // 2):
        raise InputError(src, f"only {len(kept)} of {len(entries)} listed frames have their image"
                              f"{' and are sharp enough' if blurry else ''}"
                              f"{f' (first missing: {missing[0]!r})' if missing else ''}; is this the dataset's folder?")
    if not kept:
        raise InputError(src, "no frames left (n_frames is 0)")
    return kept


def _scene_box(meta: dict, src: Path) -> dict | None:
    """instant-ngp's scene box in the file's coordinates. instant-ngp maps a position p to
    p·scale + offset (then permutes axes) and its unit cube [0, 1]³ holds the scene, aabb_scale
    times larger for unbounded captures; `aabb` gives the cube directly."""
    if not any(k in meta for k in ("aabb_scale", "scale", "offset", "aabb")):
        return None
    where = str(src)
    aabb_scale = _number(meta, "aabb_scale", where, 1.0)
    if not 1 <= aabb_scale <= 1024:
        raise InputError(src, f"field 'aabb_scale' = {aabb_scale:g} is not 1 to 1024")
    if "aabb" in meta:
        try:
            box = np.array(meta["aabb"], dtype=np.float64)
        except (TypeError, ValueError):
            box = None
        if box is None or box.shape != (2, 3) or not np.isfinite(box).all() or not (box[1] > box[0]).all():
            raise InputError(src, "field 'aabb' must be [[xmin, ymin, zmin], [xmax, ymax, zmax]]")
        centre, half = (box[0] + box[1]) / 2, float((box[1] - box[0]).max()) / 2
    else:
        scale = _number(meta, "scale", where, 0.33)
        if not scale > 0:
            raise InputError(src, f"field 'scale' = {scale:g} must be positive")
        offset = meta.get("offset", 0.5)
        offset = [offset] * 3 if not isinstance(offset, list) else offset
        if len(offset) != 3:
            raise InputError(src, "field 'offset' must be a number or three")
        offset = np.array([_number({"offset": o}, "offset", where) for o in offset])
        centre, half = (0.5 - offset) / scale, 0.5 / scale
    return {"centre": [float(c) for c in centre], "half": [half] * 3, "unbounded": aabb_scale > 1,
            "aabb_scale": aabb_scale}


def _unused_keys(meta: dict, frames: list[dict]) -> list[str]:
    keys = set(meta) | {k for f in frames for k in f}
    return sorted(keys - _USED - _INFORMATIONAL)


def load_nerfstudio(path: Path, background=(1.0, 1.0, 1.0), strict: bool = False) -> Dataset:
    """Load a transforms.json (or the folder holding one). Listed frames whose image is missing are
    skipped with a warning (instant-ngp's behaviour) unless `strict`."""
    path = Path(path)
    src = path / "transforms.json" if path.is_dir() else path
    root = require_dir(src.parent, "dataset folder")
    meta = read_json(src)
    if not isinstance(meta, dict) or "frames" not in meta:
        raise InputError(src, "missing field 'frames'")
    entries = meta["frames"]
    if not isinstance(entries, list) or not entries:
        raise InputError(src, "'frames' must be a non-empty list")
    warnings: list[str] = []
    frames = []
    for k, e, image in _listed_frames(meta, root, src, strict, warnings):
        where = f"{src} (frame {k})"
        c2w = opengl_to_opencv(check_pose(e["transform_matrix"], where))
        frames.append(Frame(Path(_clean(e["file_path"])).as_posix(), image, _intrinsics(meta, e, image, where), c2w))
    frames.sort(key=lambda f: f.name)
    names = [f.name for f in frames]
    if len(set(names)) != len(names):
        raise InputError(src, "two frames use the same file_path")
    if any(k in meta for k in ("train_filenames", "val_filenames", "test_filenames")):
        skipped = {_clean(e.get("file_path")) for e in entries}
        index = {n: i for i, n in enumerate(names)}
        splits = {}
        for split in ("train", "val", "test"):
            listed = meta.get(f"{split}_filenames", [])
            if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
                raise InputError(src, f"'{split}_filenames' must be a list of file names")
            listed = [_clean(n) for n in listed]
            unknown = [n for n in listed if n not in index and n not in skipped]
            if unknown:
                raise InputError(src, f"{split}_filenames names {unknown[0]!r}, which is not a frame")
            splits[split] = [index[n] for n in listed if n in index]  # skipped frames leave their split
    else:
        splits = every_nth_split(len(frames))
    scene = Dataset(root, "nerfstudio", frames, splits, tuple(float(b) for b in background))
    box = _scene_box(meta, src)
    if box is not None:
        scene.extra["scene_box"] = box
    unused = _unused_keys(meta, [e for e in entries if isinstance(e, dict)])
    if unused:
        warnings.append(f"{src}: ignored keys {', '.join(unused)} (lumen3d does not use them)")
    scene.warnings = warnings
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
