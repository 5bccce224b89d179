"""COLMAP sparse models (cameras, images, points3D) in binary and text form, and the dataset
loader for a COLMAP scene folder (``images/`` + ``sparse/0/``).

Parsed here rather than through pycolmap so that a damaged file gives a one-line error
naming the file, never a crash inside native code.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.data.cameras import Intrinsics, check_pose, qvec_to_rotmat, rotmat_to_qvec
from engine.data.dataset import Dataset, Frame, every_nth_split
from engine.errors import InputError
from engine.io import atomic_path, require_dir, resolve_inside

# id: (name, number of params). Only the models lumen3d can use are listed.
CAMERA_MODELS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4),
                 3: ("RADIAL", 5), 4: ("OPENCV", 8)}
_MODEL_IDS = {name: i for i, (name, _) in CAMERA_MODELS.items()}
_OTHER_MODELS = {5: "OPENCV_FISHEYE", 6: "FULL_OPENCV", 7: "FOV", 8: "SIMPLE_RADIAL_FISHEYE",
                 9: "RADIAL_FISHEYE", 10: "THIN_PRISM_FISHEYE", 11: "RAD_TAN_THIN_PRISM_FISHEYE"}


@dataclass
class ColmapCamera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray

    def intrinsics(self, source) -> Intrinsics:
        p = [float(v) for v in self.params]
        if self.model == "SIMPLE_PINHOLE":
            i = Intrinsics(self.width, self.height, p[0], p[0], p[1], p[2])
        elif self.model == "PINHOLE":
            i = Intrinsics(self.width, self.height, *p[:4])
        elif self.model == "SIMPLE_RADIAL":
            i = Intrinsics(self.width, self.height, p[0], p[0], p[1], p[2], "SIMPLE_RADIAL", (p[3],))
        elif self.model == "RADIAL":
            i = Intrinsics(self.width, self.height, p[0], p[0], p[1], p[2], "OPENCV", (p[3], p[4], 0.0, 0.0))
        else:
            i = Intrinsics(self.width, self.height, *p[:4], "OPENCV", tuple(p[4:8]))
        return i.check(source)

    @staticmethod
    def from_intrinsics(cam_id: int, i: Intrinsics) -> "ColmapCamera":
        if i.model == "PINHOLE":
            return ColmapCamera(cam_id, "PINHOLE", i.width, i.height, np.array([i.fx, i.fy, i.cx, i.cy]))
        if i.model == "SIMPLE_RADIAL" and i.fx == i.fy:
            return ColmapCamera(cam_id, "SIMPLE_RADIAL", i.width, i.height, np.array([i.fx, i.cx, i.cy, i.dist[0]]))
        dist = i.dist if i.model == "OPENCV" else (i.dist[0], 0.0, 0.0, 0.0)
        return ColmapCamera(cam_id, "OPENCV", i.width, i.height, np.array([i.fx, i.fy, i.cx, i.cy, *dist]))


@dataclass
class ColmapImage:
    id: int
    qvec: np.ndarray  # world-to-camera rotation (w, x, y, z)
    tvec: np.ndarray  # world-to-camera translation
    camera_id: int
    name: str
    xys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    point3D_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def c2w(self, source) -> np.ndarray:
        w2c = np.eye(4)
        w2c[:3, :3] = qvec_to_rotmat(self.qvec)
        w2c[:3, 3] = self.tvec
        return check_pose(np.linalg.inv(w2c), source)


@dataclass
class ColmapPoints:
    ids: np.ndarray  # (M,) int64
    xyz: np.ndarray  # (M, 3) float64
    rgb: np.ndarray  # (M, 3) uint8
    error: np.ndarray  # (M,) float64
    tracks: list[np.ndarray]  # M arrays of (image_id, point2D_idx) rows

    @staticmethod
    def empty() -> "ColmapPoints":
        return ColmapPoints(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0), [])


@dataclass
class ColmapModel:
    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points: ColmapPoints


class _Reader:
    """Bounds-checked little-endian reader over a file's bytes."""

    def __init__(self, path: Path):
        self.path, self.data, self.pos = path, path.read_bytes(), 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise InputError(self.path, f"file is truncated (needed {size} bytes at offset {self.pos})")
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def array(self, dtype, count: int) -> np.ndarray:
        dtype = np.dtype(dtype)
        size = dtype.itemsize * count
        if count < 0 or self.pos + size > len(self.data):
            raise InputError(self.path, f"file is truncated (needed {size} bytes at offset {self.pos})")
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos).copy()
        self.pos += size
        return out

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise InputError(self.path, f"file is truncated (unterminated name at offset {self.pos})")
        s = self.data[self.pos:end].decode("utf-8", "replace")
        self.pos = end + 1
        return s

    def count(self, what: str) -> int:
        (n,) = self.take("<Q")
        if n > len(self.data):  # each record takes at least a byte: a larger count is garbage
            raise InputError(self.path, f"implausible {what} count {n}: the file is corrupt")
        return n


def _checked(reader):
    """A binary reader whose values, not only its lengths, can be garbage (ids past int64, counts
    that do not fit): anything it raises on such a file is the file's fault, said in one line."""
    import functools

    @functools.wraps(reader)
    def read(path: Path):
        try:
            return reader(path)
        except (OverflowError, ValueError, MemoryError, struct.error) as e:
            raise InputError(path, f"corrupt COLMAP file ({e.__class__.__name__}: {str(e)[:80]})") from None
    return read


def _model_name(model_id: int, path: Path) -> tuple[str, int]:
    if model_id in CAMERA_MODELS:
        return CAMERA_MODELS[model_id]
    raise InputError(path, f"unsupported camera model {_OTHER_MODELS.get(model_id, model_id)} "
                           f"(supported: {', '.join(n for n, _ in CAMERA_MODELS.values())})")


@_checked
def _read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    r, cams = _Reader(path), {}
    for _ in range(r.count("camera")):
        cam_id, model_id, w, h = r.take("<iiQQ")
        name, n = _model_name(model_id, path)
        cams[cam_id] = ColmapCamera(cam_id, name, int(w), int(h), r.array("<f8", n))
    return cams


@_checked
def _read_images_bin(path: Path) -> dict[int, ColmapImage]:
    r, images = _Reader(path), {}
    pt = np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")])
    for _ in range(r.count("image")):
        vals = r.take("<i4d3di")
        img_id, qvec, tvec, cam_id = vals[0], np.array(vals[1:5]), np.array(vals[5:8]), vals[8]
        name = r.cstring()
        pts = r.array(pt, r.count("point"))
        images[img_id] = ColmapImage(img_id, qvec, tvec, cam_id, name,
                                     np.stack([pts["x"], pts["y"]], axis=1), pts["id"].astype(np.int64))
    return images


@_checked
def _read_points_bin(path: Path) -> ColmapPoints:
    r = _Reader(path)
    n = r.count("point")
    ids, xyz, rgb, err, tracks = np.zeros(n, np.int64), np.zeros((n, 3)), np.zeros((n, 3), np.uint8), np.zeros(n), []
    for k in range(n):
        vals = r.take("<Q3d3Bd")
        ids[k], xyz[k], rgb[k], err[k] = vals[0], vals[1:4], vals[4:7], vals[7]
        tracks.append(r.array("<i4", 2 * r.count("track")).reshape(-1, 2))
    return ColmapPoints(ids, xyz, rgb, err, tracks)


def _text_rows(path: Path):
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield lineno, line


def _parse(path: Path, lineno: int, fn, *args):
    try:
        return fn(*args)
    except (ValueError, IndexError):
        raise InputError(path, f"line {lineno}: malformed entry") from None


def _read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    cams = {}
    for lineno, line in _text_rows(path):
        w = line.split()
        if len(w) < 4:
            raise InputError(path, f"line {lineno}: malformed camera entry")
        if w[1] not in _MODEL_IDS:
            raise InputError(path, f"unsupported camera model {w[1]} "
                                   f"(supported: {', '.join(_MODEL_IDS)})")
        n = CAMERA_MODELS[_MODEL_IDS[w[1]]][1]
        if len(w) != 4 + n:
            raise InputError(path, f"line {lineno}: {w[1]} takes {n} parameters, got {len(w) - 4}")
        cam_id, width, height = _parse(path, lineno, lambda: (int(w[0]), int(w[2]), int(w[3])))
        cams[cam_id] = ColmapCamera(cam_id, w[1], width, height, _parse(path, lineno, np.array, w[4:], float))
    return cams


def _read_images_txt(path: Path) -> dict[int, ColmapImage]:
    # Two lines per image (pose line, then points line, which may be empty); comments skipped.
    lines = [(n, ln.strip()) for n, ln in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
             if not ln.lstrip().startswith("#")]
    while lines and not lines[0][1]:
        lines.pop(0)
    images = {}
    for k in range(0, len(lines), 2):
        lineno, line = lines[k]
        if not line:
            continue
        w = line.split()
        if len(w) < 10:
            raise InputError(path, f"line {lineno}: malformed image entry")
        vals = _parse(path, lineno, lambda: [float(v) for v in w[1:8]])
        img_id, cam_id = _parse(path, lineno, lambda: (int(w[0]), int(w[8])))
        xys, ids = np.zeros((0, 2)), np.zeros(0, np.int64)
        if k + 1 < len(lines) and lines[k + 1][1]:
            plineno, p = lines[k + 1][0], lines[k + 1][1].split()
            if len(p) % 3:
                raise InputError(path, f"line {plineno}: points need 3 values each")
            arr = _parse(path, plineno, lambda: np.array(p, dtype=np.float64).reshape(-1, 3))
            xys, ids = arr[:, :2], arr[:, 2].astype(np.int64)
        images[img_id] = ColmapImage(img_id, np.array(vals[:4]), np.array(vals[4:7]), cam_id, " ".join(w[9:]), xys, ids)
    return images


def _read_points_txt(path: Path) -> ColmapPoints:
    ids, xyz, rgb, err, tracks = [], [], [], [], []
    for lineno, line in _text_rows(path):
        w = line.split()
        if len(w) < 8 or (len(w) - 8) % 2:
            raise InputError(path, f"line {lineno}: malformed point entry")
        ids.append(_parse(path, lineno, int, w[0]))
        xyz.append(_parse(path, lineno, lambda: [float(v) for v in w[1:4]]))
        rgb.append(_parse(path, lineno, lambda: [int(v) for v in w[4:7]]))
        if not all(0 <= v <= 255 for v in rgb[-1]):
            raise InputError(path, f"line {lineno}: colour {rgb[-1]} is not 0..255")
        err.append(_parse(path, lineno, float, w[7]))
        tracks.append(_parse(path, lineno, lambda: np.array(w[8:], dtype=np.int32).reshape(-1, 2)))
    if not ids:
        return ColmapPoints.empty()
    return ColmapPoints(np.array(ids, np.int64), np.array(xyz), np.array(rgb, np.uint8), np.array(err), tracks)


def find_model_dir(path: Path) -> Path:
    """The folder holding cameras/images/points3D files: `path` itself, path/sparse/0 or path/sparse."""
    for cand in (path, path / "sparse" / "0", path / "sparse", path / "colmap" / "sparse" / "0"):
        if any((cand / f"cameras{ext}").is_file() for ext in (".bin", ".txt")):
            return cand
    raise InputError(path, "no COLMAP model found (looked for cameras.bin/.txt in ., sparse/0, sparse)")


def read_model(model_dir: Path) -> ColmapModel:
    """Read a model folder; binary files are preferred when both forms exist."""
    for ext, readers in ((".bin", (_read_cameras_bin, _read_images_bin, _read_points_bin)),
                         (".txt", (_read_cameras_txt, _read_images_txt, _read_points_txt))):
        if (model_dir / f"cameras{ext}").is_file():
            if not (model_dir / f"images{ext}").is_file():
                raise InputError(model_dir / f"images{ext}", "file not found (needed beside cameras" + ext + ")")
            cams = readers[0](model_dir / f"cameras{ext}")
            images = readers[1](model_dir / f"images{ext}")
            pts_file = model_dir / f"points3D{ext}"
            points = readers[2](pts_file) if pts_file.is_file() else ColmapPoints.empty()
            for img in images.values():
                if img.camera_id not in cams:
                    raise InputError(model_dir / f"images{ext}",
                                     f"image {img.name!r} refers to camera {img.camera_id}, which is not in cameras{ext}")
            return ColmapModel(cams, images, points)
    raise InputError(model_dir, "no cameras.bin or cameras.txt")


def write_model(model: ColmapModel, model_dir: Path, binary: bool = True) -> None:
    """Write the three files, each atomically."""
    model_dir.mkdir(parents=True, exist_ok=True)
    ext = ".bin" if binary else ".txt"
    writers = (_write_bin if binary else _write_txt)(model)
    for name, data in writers.items():
        with atomic_path(model_dir / f"{name}{ext}") as tmp:
            tmp.write_bytes(data)


def _write_bin(m: ColmapModel) -> dict[str, bytes]:
    cams = [struct.pack("<Q", len(m.cameras))]
    for c in m.cameras.values():
        cams.append(struct.pack("<iiQQ", c.id, _MODEL_IDS[c.model], c.width, c.height))
        cams.append(np.asarray(c.params, "<f8").tobytes())
    imgs = [struct.pack("<Q", len(m.images))]
    pt = np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")])
    for i in m.images.values():
        imgs.append(struct.pack("<i4d3di", i.id, *i.qvec, *i.tvec, i.camera_id))
        imgs.append(i.name.encode() + b"\0")
        arr = np.empty(len(i.xys), pt)
        arr["x"], arr["y"], arr["id"] = i.xys[:, 0], i.xys[:, 1], i.point3D_ids
        imgs.append(struct.pack("<Q", len(arr)) + arr.tobytes())
    p = m.points
    pts = [struct.pack("<Q", len(p.ids))]
    for k in range(len(p.ids)):
        pts.append(struct.pack("<Q3d3Bd", p.ids[k], *p.xyz[k], *p.rgb[k], p.error[k]))
        pts.append(struct.pack("<Q", len(p.tracks[k])) + np.asarray(p.tracks[k], "<i4").tobytes())
    return {"cameras": b"".join(cams), "images": b"".join(imgs), "points3D": b"".join(pts)}


def _write_txt(m: ColmapModel) -> dict[str, bytes]:
    r = repr  # repr of a Python float round-trips exactly
    cams = ["# Camera list: CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    cams += [" ".join([str(c.id), c.model, str(c.width), str(c.height), *(r(float(v)) for v in c.params)])
             for c in m.cameras.values()]
    imgs = ["# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", "# POINTS2D[] as (X, Y, POINT3D_ID)"]
    for i in m.images.values():
        imgs.append(" ".join([str(i.id), *(r(float(v)) for v in (*i.qvec, *i.tvec)), str(i.camera_id), i.name]))
        imgs.append(" ".join(f"{r(float(x))} {r(float(y))} {int(pid)}" for (x, y), pid in zip(i.xys, i.point3D_ids)))
    p = m.points
    pts = ["# POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"]
    for k in range(len(p.ids)):
        pts.append(" ".join([str(int(p.ids[k])), *(r(float(v)) for v in p.xyz[k]), *(str(int(v)) for v in p.rgb[k]),
                             r(float(p.error[k])), *(str(int(v)) for v in np.asarray(p.tracks[k]).ravel())]))
    return {k: ("\n".join(v) + "\n").encode() for k, v in (("cameras", cams), ("images", imgs), ("points3D", pts))}


def load_colmap(path: Path, images_dir: Path | None = None) -> Dataset:
    """A COLMAP scene: `path` holds images/ and sparse/0/ (or is the model folder itself)."""
    path = require_dir(path, "dataset folder")
    model_dir = find_model_dir(path)
    model = read_model(model_dir)
    if not model.images:
        raise InputError(model_dir, "the model has no registered images")
    root = path if model_dir != path else path.parent
    images_dir = require_dir(images_dir or root / "images", "images folder")
    ext = ".bin" if (model_dir / "cameras.bin").is_file() else ".txt"
    src = model_dir / f"images{ext}"
    cam_intr = {cid: c.intrinsics(model_dir / f"cameras{ext}") for cid, c in model.cameras.items()}
    frames = []
    for img in sorted(model.images.values(), key=lambda i: i.name):
        image = resolve_inside(images_dir, img.name, src)
        if not image.is_file():
            raise InputError(src, f"image {img.name!r} not found in {images_dir}")
        frames.append(Frame(img.name, image, cam_intr[img.camera_id], img.c2w(f"{src} (image {img.name!r})")))
    scene = Dataset(root, "colmap", frames, every_nth_split(len(frames)))
    if len(model.points.ids):
        if not np.isfinite(model.points.xyz).all():
            raise InputError(model_dir / f"points3D{ext}", "points with NaN or infinite coordinates")
        scene.points, scene.point_colors = model.points.xyz, model.points.rgb
    scene.check_image_sizes()
    return scene


def image_from_c2w(img_id: int, camera_id: int, name: str, c2w: np.ndarray) -> ColmapImage:
    w2c = np.linalg.inv(c2w)
    return ColmapImage(img_id, rotmat_to_qvec(w2c[:3, :3]), w2c[:3, 3].copy(), camera_id, name)
