"""What can be shown: every result the engine makes, read from a file or a run directory.

`load_content(path)` returns plain items (numpy/torch data, no Open3D objects), so the same
description feeds the offscreen renderer and the interactive window.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.data.cameras import Intrinsics
from engine.errors import InputError

log = logging.getLogger("lumen3d")

MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".off", ".stl", ".fbx")


@dataclass
class Gaussians:
    name: str
    params: dict  # scenes.gaussians layout (torch tensors)
    source: Path


@dataclass
class Mesh:
    name: str
    path: Path  # Open3D reads it (materials, UV textures, PBR maps, vertex colours)


@dataclass
class Points:
    name: str
    xyz: np.ndarray  # (N, 3)
    rgb: np.ndarray | None = None  # (N, 3) in [0, 1]


@dataclass
class Cameras:
    name: str
    c2w: np.ndarray  # (N, 4, 4) camera-to-world, OpenCV axes
    intrinsics: list[Intrinsics]
    images: list[Path | None] = field(default_factory=list)


@dataclass
class Sequence:
    name: str
    seq: object  # scenes.body_sequence.BodySequence
    source: Path


Item = Gaussians | Mesh | Points | Cameras | Sequence


def up_vector(items: list[Item]) -> np.ndarray:
    """World up: the cameras' mean up direction when there are cameras (COLMAP worlds have no
    fixed up), else the z-up of our Blender-style and built-in scenes; a body sequence in a
    camera's frame has OpenCV's −y up."""
    cams = [it for it in items if isinstance(it, Cameras)]
    if cams:
        ups = np.concatenate([-c.c2w[:, :3, 1] for c in cams])
        up = ups.mean(0)
        if np.linalg.norm(up) > 1e-6:
            return up / np.linalg.norm(up)
    seqs = [it for it in items if isinstance(it, Sequence)]
    if seqs and seqs[0].seq.c2w is not None:
        return -np.asarray(seqs[0].seq.c2w)[:3, 1]
    return np.array([0.0, 0.0, 1.0])


# ------------------------------------------------------------------------------------ files
def _load_ply(path: Path) -> list[Item]:
    from engine.data.ply import ply_elements, read_ply_vertices

    elements = ply_elements(path)
    vertex = elements.get("vertex", (0, []))
    if {"f_dc_0", "opacity", "scale_0", "rot_0"} <= set(vertex[1]):
        from scenes.gaussians import load_ply

        return [Gaussians(path.stem, load_ply(path), path)]
    if elements.get("face", (0, []))[0] > 0:
        _check_mesh(path)
        return [Mesh(path.stem, path)]
    if vertex[0] == 0:
        raise InputError(path, "PLY file has no vertices")
    v = read_ply_vertices(path)
    if not {"x", "y", "z"} <= set(v):
        raise InputError(path, "PLY vertices have no x, y, z")
    xyz = np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float64)
    rgb = None
    if {"red", "green", "blue"} <= set(v):
        rgb = np.stack([v["red"], v["green"], v["blue"]], 1).astype(np.float64)
        rgb = rgb / 255.0 if rgb.max() > 1.0 else rgb
    if not np.isfinite(xyz).all():
        raise InputError(path, "non-finite point positions")
    return [Points(path.stem, xyz, rgb)]


def _check_mesh(path: Path) -> None:
    from viewer.mesh_files import read_mesh

    if not path.is_file():
        raise InputError(path, "file not found")
    if read_mesh(path)[0] is None:
        raise InputError(path, "no triangles could be read (unreadable or empty mesh file)")


def _scene_cameras(scene, name: str) -> Cameras:
    return Cameras(name, np.stack([f.c2w for f in scene.frames]), [f.intrinsics for f in scene.frames],
                   [f.image_path for f in scene.frames])


def _colmap_model(model_dir: Path, images_dir: Path | None) -> list[Item]:
    from engine.data.colmap import read_model

    model = read_model(model_dir)
    ext = ".bin" if (model_dir / "cameras.bin").is_file() else ".txt"
    intr = {cid: c.intrinsics(model_dir / f"cameras{ext}") for cid, c in model.cameras.items()}
    imgs = sorted(model.images.values(), key=lambda i: i.name)
    items: list[Item] = []
    if imgs:
        from engine.io import contained

        source = model_dir / f"images{ext}"
        paths = [contained(images_dir, images_dir / i.name, source, i.name)
                 if images_dir and (images_dir / i.name).is_file() else None for i in imgs]
        items.append(Cameras("cameras", np.stack([i.c2w(model_dir) for i in imgs]),
                             [intr[i.camera_id] for i in imgs], paths))
    if len(model.points.ids):
        items.append(Points("sparse points", model.points.xyz, model.points.rgb / 255.0))
    if not items:
        raise InputError(model_dir, "COLMAP model has no images and no points")
    return items


def _dataset(path: Path) -> list[Item]:
    from engine.data import load_dataset

    scene = load_dataset(path)
    items: list[Item] = [_scene_cameras(scene, "cameras")]
    if scene.points is not None and len(scene.points):
        rgb = None if scene.point_colors is None else scene.point_colors / 255.0
        items.append(Points("sparse points", scene.points, rgb))
    return items


def _run_directory(path: Path) -> list[Item]:
    """A lumen3d run: its trained scene, meshes, body sequences, and the cameras it used. A run
    whose training has not exported yet shows what its checkpoint's kind offers (the registry)."""
    from engine.io import read_json

    cfg = read_json(path / "config.json")
    job = cfg.get("job", "?") if isinstance(cfg, dict) else "?"
    items: list[Item] = []
    exports = path / "exports"
    ply = exports / "point_cloud.ply"
    ckpt = path / "checkpoints" / "last.pt"
    if ply.is_file():
        items += _load_ply(ply)
    elif ckpt.is_file():
        from engine.registry import read_checkpoint, use_checkpoint

        state, kind = read_checkpoint(ckpt)
        content = use_checkpoint(ckpt, kind.method_class().view_content, state, ckpt)
        if "gaussians" in content:
            items.append(Gaussians("gaussians", content["gaussians"], ckpt))
    for mesh in sorted(exports.glob("*")) if exports.is_dir() else []:
        if mesh.suffix.lower() in MESH_SUFFIXES or (mesh.suffix == ".ply" and mesh != ply):
            items += _load_file(mesh)
    for seq in sorted(path.glob("*.npz")):
        items += _load_file(seq)
    # the cameras: a run that made its own dataset (sfm, demo) holds it; a training run names it
    data = path if (path / "transforms.json").is_file() else None
    if data is None and isinstance(cfg, dict) and isinstance(cfg.get("config", {}).get("data"), str):
        data = Path(cfg["config"]["data"])
    if data is not None:
        try:
            got = _dataset(data)
            has_scene = any(isinstance(it, (Gaussians, Mesh)) for it in items)
            items += [it for it in got if not (has_scene and isinstance(it, Points))]
        except InputError as e:
            log.warning("cameras of %s not shown: %s", path, e)
    if not items:
        raise InputError(path, f"run directory of job {job!r} has nothing to show yet (no exports, "
                               "checkpoint, body sequence or cameras)")
    return items


def _load_file(path: Path) -> list[Item]:
    suffix = path.suffix.lower()
    if suffix == ".ply":
        return _load_ply(path)
    if suffix == ".splat":
        from scenes.gaussians import load_splat

        return [Gaussians(path.stem, load_splat(path), path)]
    if suffix in MESH_SUFFIXES:
        _check_mesh(path)
        return [Mesh(path.stem, path)]
    if suffix == ".npz":
        from scenes.body_sequence import load_sequence

        return [Sequence(path.stem, load_sequence(path), path)]
    if suffix == ".json":
        return _dataset(path)
    raise InputError(path, f"unknown kind of file {suffix or '(no suffix)'!r} (known: .ply .splat "
                           f"{' '.join(MESH_SUFFIXES)} .npz transforms.json, a run or dataset folder)")


def load_content(path: Path) -> list[Item]:
    """Everything at `path`: a file, a run directory, a dataset folder or a COLMAP model."""
    path = Path(path)
    if path.is_file():
        return _load_file(path)
    if not path.is_dir():
        raise InputError(path, "not found")
    if (path / "config.json").is_file() and (path / "metrics.json").is_file():
        return _run_directory(path)
    for model_dir in (path, path / "sparse" / "0", path / "sparse"):
        if any((model_dir / f"cameras{e}").is_file() for e in (".bin", ".txt")):
            if (path / "transforms.json").is_file() or (path / "poses_bounds.npy").is_file():
                break
            images = path / "images" if (path / "images").is_dir() else None
            return _colmap_model(model_dir, images)
    return _dataset(path)
