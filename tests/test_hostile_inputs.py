"""Hostile-but-realistic inputs, systematically (the README's promise, for every job): each file
format we read gets a table of mutations — truncation at several offsets, wrong types, NaN/inf,
negative/huge/non-numeric counts, missing keys, deep nesting, path escapes by '..', absolute paths
and links — and every job its options at and beyond their ranges. Each case must end with exit 2 and
one `lumen3d: error:` line naming the file or option, inputs byte-identical, no run directory left
behind. Where native code would read the file (Open3D's mesh readers, our kernels) the case runs in
its own process, so a crash fails the test instead of ending the suite. The binary readers are also
fuzzed with hypothesis."""
import json
import math
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import assert_one_clear_line, run_cli, tree_digest


# ------------------------------------------------------------------------------------------ helpers
def cli(*args) -> tuple[int, str]:
    """`lumen3d ARGS` in this process (pure-Python paths: fast); returns the exit code and stderr."""
    import contextlib
    import io

    from engine.cli import main

    err, saved = io.StringIO(), warnings.showwarning
    try:
        with contextlib.redirect_stderr(err):
            rc = main([str(a) for a in args])
    finally:
        warnings.showwarning = saved
    return rc, err.getvalue()


def refused(rc: int, err: str, *parts: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.startswith("lumen3d: error:")]
    assert rc == 2 and len(lines) == 1, (rc, err[-1500:])
    assert "Traceback" not in err and "internal error" not in err, err[-1500:]
    for p in parts:
        assert p in lines[0], (p, lines[0])


def c2w_ring(n: int) -> list[np.ndarray]:
    from engine.data.cameras import look_at

    return [look_at([3 * math.cos(a), 3 * math.sin(a), 1.0], [0, 0, 0]) for a in np.linspace(0, 6, n)]


def png(path: Path, size=(8, 6), mode="RGBA") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], len(mode)), dtype=np.uint8), mode).save(path)


def blender(root: Path) -> Path:
    from engine.data.cameras import opencv_to_opengl

    for split, n in (("train", 3), ("test", 2)):
        frames = []
        for k, m in enumerate(c2w_ring(n)):
            png(root / split / f"r_{k}.png")
            frames.append({"file_path": f"./{split}/r_{k}", "transform_matrix": opencv_to_opengl(m).tolist()})
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": frames}))
    return root


def nerfstudio(root: Path) -> Path:
    from engine.data.cameras import opencv_to_opengl

    frames = []
    for k, m in enumerate(c2w_ring(4)):
        png(root / "images" / f"f{k}.png", mode="RGB")
        frames.append({"file_path": f"images/f{k}.png", "transform_matrix": opencv_to_opengl(m).tolist()})
    (root / "transforms.json").write_text(json.dumps({"camera_model": "PINHOLE", "fl_x": 8.0, "fl_y": 8.0,
                                                      "cx": 4.0, "cy": 3.0, "w": 8, "h": 6, "frames": frames}))
    return root


def colmap(root: Path, binary: bool) -> Path:
    from engine.data.colmap import ColmapCamera, ColmapModel, ColmapPoints, image_from_c2w, write_model

    images = {}
    for k, m in enumerate(c2w_ring(3)):
        png(root / "images" / f"i{k}.png", mode="RGB")
        images[k + 1] = image_from_c2w(k + 1, 1, f"i{k}.png", m)
    pts = ColmapPoints(np.arange(1, 4, dtype=np.int64), np.zeros((3, 3)) + 0.1, np.full((3, 3), 9, np.uint8),
                       np.zeros(3), [np.array([[1, 0]], np.int32)] * 3)
    cam = ColmapCamera(1, "PINHOLE", 8, 6, np.array([8.0, 8.0, 4.0, 3.0]))
    write_model(ColmapModel({1: cam}, images, pts), root / "sparse" / "0", binary=binary)
    return root


def llff(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for m in c2w_ring(3):
        gl = m[:3, :4] @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV → OpenGL axes
        llff_axes = np.stack([-gl[:, 1], gl[:, 0], gl[:, 2], gl[:, 3]], 1)  # [down, right, back, t]
        rows.append(np.concatenate([np.concatenate([llff_axes, [[48.0], [64.0], [60.0]]], 1).ravel(), [1.0, 9.0]]))
    np.save(root / "poses_bounds.npy", np.array(rows))
    for k in range(3):
        png(root / "images_8" / f"p{k}.png", size=(8, 6), mode="RGB")
    return root


def edit_json(path: Path, fn) -> None:
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d, allow_nan=True))


def set_frame(key, value, k=0, name="transforms_train.json"):
    return lambda root: edit_json(root / name, lambda d: d["frames"][k].__setitem__(key, value))


def set_top(key, value, name="transforms_train.json"):
    return lambda root: edit_json(root / name, lambda d: d.__setitem__(key, value))


def drop_top(key, name="transforms_train.json", *more):
    return lambda root: edit_json(root / name, lambda d: [d.pop(k, None) for k in (key, *more)])


def truncate(name: str, frac: float):
    def fn(root):
        p = root / name
        data = p.read_bytes()
        p.write_bytes(data[:max(1, int(len(data) * frac))] if frac < 1 else data[:-3])
    return fn


def replace_bytes(name: str, data: bytes):
    return lambda root: (root / name).write_bytes(data)


def link_out(name: str, target_name: str = "secret.png"):
    """Make `name` a link to a photo outside the dataset."""
    def fn(root):
        outside = root.parent / target_name
        png(outside, mode="RGBA" if "train" in name else "RGB")
        (root / name).unlink()
        (root / name).symlink_to(outside)
    return fn


MATRIX = [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 3.0], [0, 0, 0, 1.0]]

# (name, dataset builder, mutation, what the one line must name)
DATASET_CASES = [
    # Blender JSON
    ("blender-truncated-1", blender, truncate("transforms_train.json", 0.0), ["transforms_train.json", "JSON"]),
    ("blender-truncated-half", blender, truncate("transforms_train.json", 0.5), ["transforms_train.json"]),
    ("blender-truncated-end", blender, truncate("transforms_train.json", 1), ["transforms_train.json"]),
    ("blender-angle-nan", blender, set_top("camera_angle_x", float("nan")), ["transforms_train.json"]),
    ("blender-angle-inf", blender, set_top("camera_angle_x", float("inf")), ["transforms_train.json"]),
    ("blender-angle-string", blender, set_top("camera_angle_x", "wide"), ["transforms_train.json"]),
    ("blender-angle-list", blender, set_top("camera_angle_x", [0.7]), ["transforms_train.json"]),
    ("blender-angle-missing", blender, drop_top("camera_angle_x"), ["transforms_train.json", "camera_angle_x"]),
    ("blender-frames-dict", blender, set_top("frames", {}), ["transforms_train.json", "frames"]),
    ("blender-frames-int", blender, set_top("frames", 5), ["transforms_train.json", "frames"]),
    ("blender-frame-int", blender, set_top("frames", [5]), ["transforms_train.json"]),
    ("blender-path-list", blender, set_frame("file_path", ["a"]), ["transforms_train.json", "file path"]),
    ("blender-path-int", blender, set_frame("file_path", 7), ["transforms_train.json", "file path"]),
    ("blender-path-dot", blender, set_frame("file_path", "."), ["transforms_train.json"]),
    ("blender-path-parent", blender, set_frame("file_path", "../secret"), ["transforms_train.json"]),
    ("blender-path-absolute", blender, set_frame("file_path", "/etc/passwd"), ["transforms_train.json", "escapes"]),
    ("blender-path-link-out", blender, link_out("train/r_0.png"), ["transforms_train.json", "escapes"]),
    ("blender-matrix-string", blender, set_frame("transform_matrix", "x"), ["transforms_train.json"]),
    ("blender-matrix-2x2", blender, set_frame("transform_matrix", [[1, 2], [3, 4]]), ["transforms_train.json"]),
    ("blender-matrix-nan", blender, set_frame("transform_matrix", [[float("nan")] * 4] * 4), ["transforms_train.json"]),
    ("blender-matrix-ragged", blender, set_frame("transform_matrix", [[1, 0], [0, 1, 0]]), ["transforms_train.json"]),
    ("blender-duplicated-frame", blender,
     lambda r: edit_json(r / "transforms_train.json", lambda d: d["frames"].append(d["frames"][0])),
     ["transforms_train.json", "repeats"]),
    ("blender-deep-nesting", blender, replace_bytes("transforms_train.json", b"[" * 100_000),
     ["transforms_train.json"]),
    # nerfstudio JSON
    ("ns-width-nan", nerfstudio, set_top("w", float("nan"), "transforms.json"), ["transforms.json", "'w'"]),
    ("ns-width-negative", nerfstudio, set_top("w", -8, "transforms.json"), ["transforms.json", "'w'"]),
    ("ns-width-string", nerfstudio, set_top("w", "eight", "transforms.json"), ["transforms.json", "'w'"]),
    ("ns-width-huge", nerfstudio, set_top("w", 1e300, "transforms.json"), ["transforms.json", "'w'"]),
    ("ns-focal-inf", nerfstudio, set_top("fl_x", float("inf"), "transforms.json"), ["transforms.json", "fl_x"]),
    ("ns-focal-missing", nerfstudio, drop_top("fl_x", "transforms.json", "fl_y"), ["transforms.json", "fl_x"]),
    ("ns-model-list", nerfstudio, set_top("camera_model", ["OPENCV"], "transforms.json"), ["transforms.json"]),
    ("ns-split-int", nerfstudio, set_top("train_filenames", 5, "transforms.json"), ["transforms.json"]),
    ("ns-split-ints", nerfstudio, set_top("train_filenames", [1, 2], "transforms.json"), ["transforms.json"]),
    ("ns-ply-escape", nerfstudio, set_top("ply_file_path", "../../x.ply", "transforms.json"), ["transforms.json"]),
    ("ns-ply-list", nerfstudio, set_top("ply_file_path", ["p.ply"], "transforms.json"), ["transforms.json"]),
    ("ns-path-escape", nerfstudio, set_frame("file_path", "../../etc/passwd", name="transforms.json"),
     ["transforms.json", "escapes"]),
    ("ns-frames-missing", nerfstudio, drop_top("frames", "transforms.json"), ["transforms.json", "frames"]),
    ("ns-truncated", nerfstudio, truncate("transforms.json", 0.3), ["transforms.json"]),
    ("ns-link-out", nerfstudio, link_out("images/f1.png"), ["transforms.json", "escapes"]),
    # COLMAP text and binary
    ("colmap-txt-name-escape", lambda r: colmap(r, False),
     lambda r: (r / "sparse/0/images.txt").write_text((r / "sparse/0/images.txt").read_text().replace(
         "i0.png", "../../../etc/passwd")), ["images.txt", "escapes"]),
    ("colmap-txt-camera-nan", lambda r: colmap(r, False),
     replace_bytes("sparse/0/cameras.txt", b"1 PINHOLE 8 6 nan 8 4 3\n"), ["cameras.txt"]),
    ("colmap-txt-camera-negative-size", lambda r: colmap(r, False),
     replace_bytes("sparse/0/cameras.txt", b"1 PINHOLE -8 6 8 8 4 3\n"), ["cameras.txt"]),
    ("colmap-txt-camera-words", lambda r: colmap(r, False),
     replace_bytes("sparse/0/cameras.txt", b"1 PINHOLE eight 6 8 8 4 3\n"), ["cameras.txt"]),
    ("colmap-txt-points-colour", lambda r: colmap(r, False),
     replace_bytes("sparse/0/points3D.txt", b"1 0 0 0 300 0 0 0.1 1 0\n"), ["points3D.txt"]),
    ("colmap-txt-points-nan", lambda r: colmap(r, False),
     replace_bytes("sparse/0/points3D.txt", b"1 nan 0 0 10 10 10 0.1 1 0\n"), ["points3D.txt"]),
    ("colmap-txt-image-quaternion-zero", lambda r: colmap(r, False),
     lambda r: (r / "sparse/0/images.txt").write_text("1 0 0 0 0 0 0 0 1 i0.png\n\n"), ["images.txt"]),
    ("colmap-bin-truncated-cameras", lambda r: colmap(r, True), truncate("sparse/0/cameras.bin", 0.5),
     ["cameras.bin"]),
    ("colmap-bin-truncated-images", lambda r: colmap(r, True), truncate("sparse/0/images.bin", 0.6),
     ["images.bin"]),
    ("colmap-bin-truncated-points", lambda r: colmap(r, True), truncate("sparse/0/points3D.bin", 0.7),
     ["points3D.bin"]),
    ("colmap-bin-huge-count", lambda r: colmap(r, True),
     lambda r: (r / "sparse/0/images.bin").write_bytes(struct.pack("<Q", 2 ** 62) + (r / "sparse/0/images.bin")
                                                        .read_bytes()[8:]), ["images.bin"]),
    ("colmap-bin-bad-model", lambda r: colmap(r, True),
     lambda r: (r / "sparse/0/cameras.bin").write_bytes(struct.pack("<QiiQQ", 1, 1, 99, 8, 6) + b"\0" * 32),
     ["cameras.bin"]),
    # LLFF
    ("llff-shape", llff, lambda r: np.save(r / "poses_bounds.npy", np.zeros((3, 16))), ["poses_bounds.npy"]),
    ("llff-empty", llff, lambda r: np.save(r / "poses_bounds.npy", np.zeros((0, 17))), ["poses_bounds.npy"]),
    ("llff-nan", llff, lambda r: np.save(r / "poses_bounds.npy", np.full((3, 17), np.nan)), ["poses_bounds.npy"]),
    ("llff-negative-bounds", llff, lambda r: _llff_bounds(r, -1.0, 9.0), ["poses_bounds.npy", "near"]),
    ("llff-zero-near", llff, lambda r: _llff_bounds(r, 0.0, 9.0), ["poses_bounds.npy", "near"]),
    ("llff-far-before-near", llff, lambda r: _llff_bounds(r, 5.0, 2.0), ["poses_bounds.npy", "near"]),
    ("llff-object-array", llff,
     lambda r: np.save(r / "poses_bounds.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True),
     ["poses_bounds.npy"]),
    ("llff-strings", llff, lambda r: np.save(r / "poses_bounds.npy", np.full((3, 17), "x")), ["poses_bounds.npy"]),
    ("llff-truncated", llff, truncate("poses_bounds.npy", 0.5), ["poses_bounds.npy"]),
    ("llff-link-out", llff, link_out("images_8/p1.png", "outside.png"), ["images_8", "escapes"]),
    # photos
    ("photo-truncated", blender, truncate("train/r_1.png", 0.5), ["r_1.png"]),
    ("photo-not-an-image", blender, replace_bytes("train/r_1.png", b"GIF89a not really"), ["r_1.png"]),
    ("photo-bomb", blender, lambda r: _bomb(r / "train" / "r_1.png"), ["r_1.png"]),
    ("photo-other-size", blender, lambda r: png(r / "train" / "r_1.png", size=(9, 6)), ["r_1.png"]),
]


def _llff_bounds(root: Path, near: float, far: float) -> None:
    a = np.load(root / "poses_bounds.npy")
    a[:, 15], a[:, 16] = near, far
    np.save(root / "poses_bounds.npy", a)


def _bomb(path: Path) -> None:
    """A PNG whose header claims 40000×40000 pixels (a decompression bomb), with a tiny body."""
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("name,build,mutate,expected", DATASET_CASES, ids=[c[0] for c in DATASET_CASES])
def test_damaged_datasets_are_refused_in_one_line(tmp_path, name, build, mutate, expected):
    root = build(tmp_path / "data")
    mutate(root)
    before = tree_digest(root)
    args = ["inspect", root] + (["--check-images"] if name.startswith("photo") else [])
    refused(*cli(*args), *expected)
    assert tree_digest(root) == before


def test_the_undamaged_datasets_load(tmp_path):
    """The corpus starts from datasets that load: every refusal above is the mutation's."""
    for build in (blender, nerfstudio, lambda r: colmap(r, False), lambda r: colmap(r, True), llff):
        root = build(tmp_path / f"d{len(list(tmp_path.iterdir()))}")
        rc, err = cli("inspect", root, "--check-images")
        assert rc == 0, err[-2000:]


# ------------------------------------------------------------------------------ photos read right
def test_photos_of_every_mode_are_read_right(tmp_path):
    from engine.data.images import read_image

    g16 = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1300)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    got = read_image(tmp_path / "g16.png")
    assert got.shape == (6, 8, 3) and np.allclose(got[..., 0], g16 / 65535.0, atol=1e-6)
    f32 = np.linspace(0, 1, 48, dtype=np.float32).reshape(6, 8)
    Image.fromarray(f32, "F").save(tmp_path / "f.tif")
    assert np.allclose(read_image(tmp_path / "f.tif")[..., 1], f32, atol=1e-6)
    Image.fromarray((f32 * 255).astype(np.uint8), "L").convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (6, 8, 3)
    Image.fromarray(np.full((6, 8, 4), 200, np.uint8), "CMYK").save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg").shape == (6, 8, 3)
    la = np.stack([np.full((6, 8), 100, np.uint8), np.full((6, 8), 50, np.uint8)], -1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    got = read_image(tmp_path / "la.png")
    assert got.shape == (6, 8, 4) and np.allclose(got[0, 0], [100 / 255] * 3 + [50 / 255])
    nan = f32.copy()
    nan[0, 0] = np.nan
    Image.fromarray(nan, "F").save(tmp_path / "nan.tif")
    from engine.errors import InputError

    with pytest.raises(InputError, match="nan.tif"):
        read_image(tmp_path / "nan.tif")


def test_a_mix_of_rgb_and_rgba_photos_trains_as_one_kind(tmp_path):
    from engine.data import load_dataset

    root = blender(tmp_path / "data")
    png(root / "train" / "r_1.png", mode="RGB")
    scene = load_dataset(root)
    assert {scene.image_rgba(i).shape[-1] for i in range(len(scene.frames))} == {4}
    assert np.all(scene.image_rgba(1)[..., 3] == 1)


# ------------------------------------------------------------------------------------------ PLY
def _ply(tmp: Path, header: str, body: bytes = b"") -> Path:
    p = tmp / "m.ply"
    p.write_bytes(header.encode() + body)
    return p


def _mesh_ply(index: int) -> str:
    return ("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
            f"element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 {index}\n")


PLY_CASES = [
    ("negative-count", "ply\nformat binary_little_endian 1.0\nelement vertex -5\nproperty float x\nend_header\n"),
    ("huge-count", "ply\nformat binary_little_endian 1.0\nelement vertex 99999999999\nproperty float x\nend_header\n"),
    ("word-count", "ply\nformat ascii 1.0\nelement vertex many\nproperty float x\nend_header\n"),
    ("no-end-header", "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"),
    ("no-format", "ply\nelement vertex 1\nproperty float x\nend_header\n0\n"),
    ("bad-format", "ply\nformat binary_middle_endian 1.0\nelement vertex 1\nproperty float x\nend_header\n"),
    ("bad-type", "ply\nformat ascii 1.0\nelement vertex 1\nproperty quaternion x\nend_header\n0\n"),
    ("property-first", "ply\nformat ascii 1.0\nproperty float x\nelement vertex 1\nend_header\n0\n"),
    ("truncated-binary", "ply\nformat binary_little_endian 1.0\nelement vertex 100\nproperty float x\n"
                         "property float y\nproperty float z\nend_header\n"),
    ("ascii-words", "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
                    "property float z\nend_header\nzero one two\n"),
    ("negative-face-index", _mesh_ply(-7)),
    ("face-index-out-of-range", _mesh_ply(3000000)),
]


@pytest.mark.parametrize("name,header", PLY_CASES, ids=[c[0] for c in PLY_CASES])
def test_damaged_ply_files_are_refused_by_every_reader(tmp_path, name, header):
    path = _ply(tmp_path, header)
    before = path.read_bytes()
    out = tmp_path / "x.png"
    # view hands meshes to Open3D, whose readers crash on bad indices: its own process
    assert_one_clear_line(run_cli("view", path, "--png", out, "--width", 32, "--height", 32), ["m.ply"])
    refused(*cli("export", path, "--format", "splat", "--out", tmp_path / "x.splat"), "m.ply")
    assert path.read_bytes() == before and not out.exists() and not (tmp_path / "x.splat").exists()


def test_off_meshes_with_bad_indices_are_refused(tmp_path):
    path = tmp_path / "m.off"
    path.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 -4\n")
    assert_one_clear_line(run_cli("view", path, "--png", tmp_path / "x.png", "--width", 32, "--height", 32),
                          ["m.off", "out of range"])


# --------------------------------------------------------------------------- checkpoints and runs
def _run_with(tmp: Path, ckpt) -> Path:
    import torch

    run = tmp / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "metrics.json").write_text("{}")
    if isinstance(ckpt, bytes):
        (run / "checkpoints" / "last.pt").write_bytes(ckpt)
    else:
        torch.save(ckpt, run / "checkpoints" / "last.pt")
    return run


def _gaussian_params(n=4, k1=0):
    import torch

    return {"means": torch.zeros(n, 3), "log_scales": torch.zeros(n, 3), "quats": torch.ones(n, 4),
            "opacity_logits": torch.zeros(n), "sh_dc": torch.zeros(n, 1, 3), "sh_rest": torch.zeros(n, k1, 3)}


def _ckpt(**method):
    return {"kind": "gaussians", "meta": {}, "config": {}, "state": {"loop": {}, "method": method}}


CHECKPOINT_CASES = [
    ("not-a-dict", [1, 2, 3], ["last.pt"]),
    ("no-kind", {"state": {}}, ["last.pt", "kind"]),
    ("unknown-kind", {"kind": "potato", "meta": {}, "state": {"method": {}}}, ["last.pt", "potato"]),
    ("no-state", {"kind": "gaussians", "meta": {}}, ["last.pt"]),
    ("no-params", _ckpt(), ["last.pt"]),
    ("params-not-tensors", _ckpt(params={"means": [1, 2]}), ["last.pt"]),
    ("params-wrong-shape", _ckpt(params={**_gaussian_params(), "quats": __import__("torch").ones(4, 3)}),
     ["last.pt", "quats"]),
    ("params-nan", _ckpt(params={**_gaussian_params(), "means": __import__("torch").full((4, 3), float("nan"))}),
     ["Gaussians have NaN"]),
    ("nerf-without-field", {"kind": "nerf", "meta": {}, "config": {}, "state": {"method": {}}}, ["last.pt"]),
]


@pytest.mark.parametrize("name,ckpt,expected", CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES])
def test_checkpoints_that_load_but_are_wrong_are_refused(tmp_path, name, ckpt, expected):
    run = _run_with(tmp_path, ckpt)
    before = tree_digest(run)
    fmt = "mesh" if "nerf" in name else "splat"
    refused(*cli("export", run, "--format", fmt, "--out", tmp_path / f"x.{'ply' if fmt == 'mesh' else 'splat'}"),
            *expected)
    assert tree_digest(run) == before


def test_an_unsafe_checkpoint_is_called_unsafe(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    run = _run_with(tmp_path, pickle.dumps({"kind": Evil()}))
    refused(*cli("export", run), "last.pt", "could run code", "refused")


# ------------------------------------------------------------------------------- outputs vs inputs
def test_no_output_lands_on_an_input(tmp_path):
    run = _run_with(tmp_path, _ckpt(params=_gaussian_params()))
    before = tree_digest(run)
    refused(*cli("export", run, "--out", run / "checkpoints" / "last.pt"), "last.pt", "input")
    refused(*cli("export", run, "--out", run / "config.json"), "config.json", "input")
    assert tree_digest(run) == before
    data = blender(tmp_path / "data")
    before = tree_digest(data)
    refused(*cli("view", data, "--png", data / "train" / "r_0.png"), "r_0.png", "input")
    refused(*cli("view", data, "--png", data / "new.png"), "new.png", "input")  # nothing new inside a dataset
    refused(*cli("view", data / "train" / "r_0.png", "--png", tmp_path / "a.png"), "r_0.png")
    link = tmp_path / "link.png"
    link.symlink_to(data / "train" / "r_1.png")
    refused(*cli("view", data, "--png", link), "link.png", "input")  # through a link
    assert tree_digest(data) == before


def test_impossible_outputs_are_one_line(tmp_path):
    run = _run_with(tmp_path, _ckpt(params=_gaussian_params()))
    (tmp_path / "afile").write_text("x")
    refused(*cli("export", run, "--format", "ply", "--out", tmp_path / "afile" / "x.ply"), "x.ply", "cannot write")
    (tmp_path / "adir.ply").mkdir()
    refused(*cli("export", run, "--format", "ply", "--out", tmp_path / "adir.ply"), "adir.ply", "folder")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root writes anywhere: make the target impossible instead
            (ro / "x.ply").mkdir()
            refused(*cli("export", run, "--format", "ply", "--out", ro / "x.ply"), "x.ply")
        else:
            refused(*cli("export", run, "--format", "ply", "--out", ro / "x.ply"), "x.ply", "cannot write")
    finally:
        ro.chmod(0o700)


def test_a_failed_start_leaves_no_run_directory_and_the_fixed_command_runs(tmp_path):
    data = blender(tmp_path / "data")
    (data / "train" / "r_2.png").write_bytes(b"broken")
    out = tmp_path / "run"
    refused(*cli("train", "gaussians", data, "--out", out, "--max-steps", 1, "--init-points", 50), "r_2.png")
    assert not out.exists()
    out.mkdir()  # an empty folder the user made stays theirs, and usable
    refused(*cli("sfm", data / "nope", "--out", out), "nope")
    assert out.is_dir() and not any(out.iterdir())


# --------------------------------------------------------------------------------- option ranges
OPTION_CASES = [
    ("train", "gaussians", "DATA", "--max-steps", "-1"),
    ("train", "gaussians", "DATA", "--max-minutes", "-1"),
    ("train", "gaussians", "DATA", "--max-minutes", "nan"),
    ("train", "gaussians", "DATA", "--checkpoint-every", "0"),
    ("train", "gaussians", "DATA", "--sh-degree", "9"),
    ("train", "gaussians", "DATA", "--lr-means", "-1"),
    ("train", "gaussians", "DATA", "--lr-sh", "inf"),
    ("train", "gaussians", "DATA", "--init-points", "0"),
    ("train", "gaussians", "DATA", "--init-opacity", "1.5"),
    ("train", "gaussians", "DATA", "--ssim-lambda", "2"),
    ("train", "gaussians", "DATA", "--downscale", "inf"),
    ("train", "gaussians", "DATA", "--downscale", "0"),
    ("train", "gaussians", "DATA", "--seed", "-1"),
    ("train", "gaussians", "DATA", "--eval-views", "0"),
    ("train", "gaussians", "DATA", "--video-frames", "-1"),
    ("train", "gaussians", "DATA", "--refine-every", "0"),
    ("train", "gaussians", "DATA", "--background", "2", "0", "0"),
    ("train", "gaussians", "DATA", "--nproc", "0"),
    ("train", "gaussians", "DATA", "--batch-size", "0"),
    ("train", "gaussians", "DATA", "--threads", "0"),
    ("train", "gaussians", "DATA", "--dist-timeout", "nan"),
    ("train", "gaussians", "DATA", "--kill-rank", "-1"),
    ("train", "nerf", "DATA", "--nproc", "-2"),
    ("train", "nerf", "DATA", "--grid-res", "0"),
    ("train", "nerf", "DATA", "--max-rays", "0"),
    ("train", "nerf", "DATA", "--log2-table", "99"),
    ("train", "nerf", "DATA", "--lr", "0"),
    ("train", "nerf", "DATA", "--samples-per-step", "0"),
    ("train", "nerf", "DATA", "--mesh-resolution", "4"),
    ("view", "DATA", "--fov", "0"),
    ("view", "DATA", "--frames", "0"),
    ("view", "DATA", "--width", "-4"),
    ("view", "DATA", "--fps", "0"),
    ("view", "DATA", "--elevation", "95"),
    ("view", "DATA", "--eye", "0", "0", "0", "--target", "0", "0", "0"),
    ("view", "DATA", "--up", "0", "0", "0"),
    ("view", "DATA", "--background", "2", "2", "2"),
    ("demo", "--width", "-4"),
    ("demo", "--views", "0"),
    ("demo", "--train-steps", "-1"),
    ("sfm", "DATA", "--fps", "0"),
    ("sfm", "DATA", "--max-image-size", "0"),
    ("sfm", "DATA", "--threads", "0"),
    ("fit-body", "DATA", "--focal", "0"),
    ("fit-body", "DATA", "--fps", "-1"),
    ("fit-body", "DATA", "--max-frames", "0"),
    ("export", "DATA", "--mesh-resolution", "0"),
    ("export", "DATA", "--mesh-threshold", "nan"),
    ("export", "DATA", "--texture-size", "8"),
    ("inspect", "DATA", "--downscale", "inf"),
    ("bench", "raster", "--repeats", "0"),
    ("bench", "raster", "--sh-degree", "9"),
    ("bench", "raster", "--sizes", "0"),
    ("bench", "raster", "--resolutions", "big"),
    ("bench", "body", "--sequences", "0"),
    ("bench", "body", "--frames", "1"),
    ("bench", "sds", "--reps", "0"),
    ("bench", "mesh", "--faces", "0"),
    ("bench", "mesh", "--resolutions", "0x9"),
    ("bench", "mesh", "--repeats", "0"),
    ("train", "guidance", "--batch", "0"),
    ("train", "guidance", "--channels", "7", "8", "8"),
    ("train", "guidance", "--ema", "1"),
    ("train", "guidance", "--caption-dropout", "1"),
    ("train", "guidance", "--held-out", "500"),
    ("train", "guidance", "--lr", "nan"),
    ("train", "judge", "--batch", "0"),
    ("bench", "text-to-3d", "--sample-steps", "0"),
    ("bench", "text-to-3d", "--held-out", "100"),
    ("bench", "distributed", "--gaussians", "10"),
    ("bench", "distributed", "--samples", "0"),
    ("bench", "distributed", "--machines", "1"),
    ("bench", "distributed", "--bandwidth-gbit", "0"),
    ("bench", "distributed", "--repeats", "0"),
    *[("generate", "a chair", *case, "--guidance", "known-object") for case in (
        ("--max-steps", "-1"), ("--batch", "0"), ("--render-size", "8"), ("--guidance-scale", "0"),
        ("--t-range", "0.5", "2"), ("--t-final", "nan", "0.5"), ("--grad-clip", "0"),
        ("--camera-distance", "0.5", "1"), ("--elevation", "-95", "0"), ("--fov", "0", "10"),
        ("--init-points", "0"), ("--guidance-size", "100"), ("--lambda-sparsity", "-1"),
        ("--albedo-ratio", "0.8", "--textureless-ratio", "0.8"), ("--mesh-resolution", "4"),
        ("--front-threshold", "200"), ("--blob-radius", "0"), ("--march-steps", "8"), ("--lr", "0"),
        ("--shading-start", "2"))],
]


@pytest.mark.parametrize("args", OPTION_CASES, ids=[" ".join(a) for a in OPTION_CASES])
def test_options_beyond_their_ranges_are_refused_before_any_work(tmp_path, args):
    data = blender(tmp_path / "data")
    before = tree_digest(data)
    option = next(a for a in args if a.startswith("--") and a not in ("--target",))
    out = tmp_path / "run"
    extra = ["--out", out] if args[0] in ("train", "demo", "sfm", "fit-body", "generate") else []
    rc, err = cli(*[data if a == "DATA" else a for a in args], *extra)
    refused(rc, err, option)
    assert not out.exists() and tree_digest(data) == before


def test_an_unknown_option_is_one_line_too():
    rc, err = cli("inspect", "x", "--bogus")
    refused(rc, err, "--bogus")
    rc, err = cli("train", "gaussians", "x", "--max-steps", "abc")
    refused(rc, err, "--max-steps")
    rc, err = cli("train", "gaussians")
    refused(rc, err, "train gaussians")


def test_library_warnings_do_not_reach_the_terminal(tmp_path):
    code = ("import numpy as np, sys\nfrom engine.cli import main\n"
            "np.seterr(all='warn')\nimport warnings\n"
            "class J:\n    def run(self):\n        np.float64(1) / np.float64(0)\n"
            "        warnings.warn('library noise')\n"
            "import engine.cli as c\nc._parse = lambda a: J()\nsys.exit(main([]))\n")
    import subprocess
    import sys

    from tests.conftest import REPO

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0 and "Warning" not in r.stderr and "noise" not in r.stderr, r.stderr


# --------------------------------------------------------------------------- body-fitting inputs
def _smpl_npz(path: Path, **changes) -> Path:
    V, J = 6, 3
    d = {"v_template": np.zeros((V, 3)), "shapedirs": np.zeros((V, 3, 2)), "posedirs": np.zeros((V, 3, 9 * (J - 1))),
         "J_regressor": np.full((J, V), 1 / V), "weights": np.full((V, J), 1 / J),
         "kintree_table": np.array([[-1, 0, 1], [0, 1, 2]]), "f": np.array([[0, 1, 2], [3, 4, 5]])}
    d.update(changes)
    d = {k: v for k, v in d.items() if v is not None}
    np.savez(path, **d)
    return path


SMPL_CASES = [
    ("missing-f", {"f": None}, "missing f"),
    ("faces-1d", {"f": np.arange(6)}, "faces"),
    ("faces-out-of-range", {"f": np.array([[0, 1, 60]])}, "faces"),
    ("template-nan", {"v_template": np.full((6, 3), np.nan)}, "v_template"),
    ("template-2-columns", {"v_template": np.zeros((6, 2))}, "v_template"),
    ("tree-scalar", {"kintree_table": np.array(3)}, "shape"),
    ("tree-unordered", {"kintree_table": np.array([[-1, 2, 0], [0, 1, 2]])}, "kinematic tree"),
    ("weights-strings", {"weights": np.full((6, 3), "w")}, "shape"),
    ("regressor-wrong-shape", {"J_regressor": np.zeros((2, 6))}, "J_regressor"),
]


@pytest.mark.parametrize("name,changes,expected", SMPL_CASES, ids=[c[0] for c in SMPL_CASES])
def test_malformed_body_models_are_refused(tmp_path, name, changes, expected):
    from engine.errors import InputError
    from scenes.body_files import load_smpl

    path = _smpl_npz(tmp_path / "model.npz", **changes)
    with pytest.raises(InputError, match="model.npz") as e:
        load_smpl(path)
    assert expected in str(e.value)


KEYPOINT_CASES = [
    ("truncated", b'{"format": "lumen3d-keypoints", "frames": [{"image"'),
    ("frames-int", json.dumps({"format": "lumen3d-keypoints", "frames": 5}).encode()),
    ("keypoints-strings", json.dumps({"format": "lumen3d-keypoints", "width": 8, "height": 8,
                                      "frames": [{"image": "a.png", "keypoints": "many"}]}).encode()),
    ("keypoints-short", json.dumps({"format": "lumen3d-keypoints", "width": 8, "height": 8,
                                    "frames": [{"image": "a.png", "keypoints": [[1, 2, 3]]}]}).encode()),
    ("keypoints-nan", json.dumps({"format": "lumen3d-keypoints", "width": 8, "height": 8,
                                  "frames": [{"image": "a.png", "keypoints": [[float("nan")] * 3] * 23}]}).encode()),
    ("openpose-people-int", json.dumps({"people": 3}).encode()),
    ("openpose-keypoints-dict", json.dumps({"people": [{"pose_keypoints_2d": {"a": 1}}]}).encode()),
    ("coco-annotations-string", json.dumps({"annotations": "none", "images": []}).encode()),
    ("coco-list-of-ints", json.dumps([1, 2, 3]).encode()),
    ("deep", b"[" * 100_000),
]


@pytest.mark.parametrize("name,data", KEYPOINT_CASES, ids=[c[0] for c in KEYPOINT_CASES])
def test_malformed_keypoint_files_are_refused(tmp_path, name, data):
    from engine.data.keypoints import read_keypoints
    from engine.errors import InputError

    path = tmp_path / "kp.json"
    path.write_bytes(data)
    with pytest.raises(InputError, match="kp.json"):
        read_keypoints(path)


def _sequence(path: Path, **changes) -> Path:
    d = {"vertices": np.zeros((2, 3, 3), np.float32), "faces": np.array([[0, 1, 2]]), "fps": np.float64(30)}
    d.update(changes)
    np.savez(path, **{k: v for k, v in d.items() if v is not None})
    return path


SEQUENCE_CASES = [
    ("no-faces", {"faces": None}),
    ("vertices-strings", {"vertices": np.full((2, 3, 3), "v")}),
    ("faces-float", {"faces": np.array([[0.5, 1, 2]])}),
    ("faces-out-of-range", {"faces": np.array([[0, 1, 9]])}),
    ("fps-vector", {"fps": np.array([1.0, 2.0])}),
    ("fps-zero", {"fps": np.float64(0)}),
    ("camera-without-size", {"K": np.eye(3)}),
    ("camera-K-2x2", {"K": np.eye(2), "width": 8, "height": 8}),
    ("keypoints-wrong-shape", {"keypoints2d": np.zeros((5, 3))}),
    ("skeleton-out-of-range", {"keypoints2d": np.zeros((2, 4, 3)), "skeleton": np.array([[0, 40]])}),
    ("frames-not-photos", {"frames": np.array(["/etc/passwd", "b.png"])}),
    ("frames-count", {"frames": np.array(["a.png"])}),
]


@pytest.mark.parametrize("name,changes", SEQUENCE_CASES, ids=[c[0] for c in SEQUENCE_CASES])
def test_malformed_body_sequences_are_refused(tmp_path, name, changes):
    path = _sequence(tmp_path / "seq.npz", **changes)
    refused(*cli("view", path, "--png", tmp_path / "x.png", "--width", 32, "--height", 32), "seq.npz")


def test_truncated_npz_files_are_refused(tmp_path):
    from engine.errors import InputError
    from scenes.body_files import load_smpl
    from scenes.body_sequence import load_sequence

    seq = _sequence(tmp_path / "seq.npz")
    model = _smpl_npz(tmp_path / "model.npz")
    for path, load in ((seq, load_sequence), (model, load_smpl)):
        data = path.read_bytes()
        for cut in (10, len(data) // 2, len(data) - 5):
            path.write_bytes(data[:cut])
            with pytest.raises(InputError, match=path.name):
                load(path)


# ----------------------------------------------------------------------- fuzzing the binary readers
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def _mutated(data: bytes, edits, cut) -> bytes:
    b = bytearray(data)
    for pos, value in edits:
        if b:
            b[pos % len(b)] = value
    return bytes(b[:cut % (len(b) + 1)]) if cut is not None else bytes(b)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8)
CUT = st.one_of(st.none(), st.integers(0, 1 << 20))


def _only_input_errors(fn, path):
    from engine.errors import InputError

    try:
        fn(path)
    except InputError as e:
        assert path.name in str(e) or str(path) in str(e)


@pytest.fixture(scope="module")
def colmap_bin(tmp_path_factory):
    root = colmap(tmp_path_factory.mktemp("colmap"), True)
    return {n: (root / "sparse" / "0" / f"{n}.bin").read_bytes() for n in ("cameras", "images", "points3D")}


@FUZZ
@given(name=st.sampled_from(["cameras", "images", "points3D"]), edits=EDITS, cut=CUT)
def test_fuzzed_colmap_binary_files_never_crash(tmp_path_factory, colmap_bin, name, edits, cut):
    from engine.data.colmap import _read_cameras_bin, _read_images_bin, _read_points_bin

    path = tmp_path_factory.mktemp("fz") / f"{name}.bin"
    path.write_bytes(_mutated(colmap_bin[name], edits, cut))
    reader = {"cameras": _read_cameras_bin, "images": _read_images_bin, "points3D": _read_points_bin}[name]
    _only_input_errors(reader, path)


@pytest.fixture(scope="module")
def ply_files(tmp_path_factory):
    import torch

    from scenes.gaussians import save_ply

    d = tmp_path_factory.mktemp("ply")
    save_ply({k: torch.randn_like(v) for k, v in _gaussian_params(3, 3).items()}, d / "splat.ply")
    (d / "mesh.ply").write_text(_mesh_ply(2))
    return {n: (d / f"{n}.ply").read_bytes() for n in ("splat", "mesh")}


@FUZZ
@given(name=st.sampled_from(["splat", "mesh"]), edits=EDITS, cut=CUT)
def test_fuzzed_ply_files_never_crash(tmp_path_factory, ply_files, name, edits, cut):
    from engine.data.ply import ply_elements, read_ply_faces, read_ply_vertices
    from scenes.gaussians import load_ply

    path = tmp_path_factory.mktemp("fz") / "f.ply"
    path.write_bytes(_mutated(ply_files[name], edits, cut))
    for reader in (ply_elements, read_ply_vertices, read_ply_faces, load_ply):
        _only_input_errors(reader, path)


@FUZZ
@given(which=st.sampled_from(["sequence", "model"]), edits=EDITS, cut=CUT)
def test_fuzzed_npz_files_never_crash(tmp_path_factory, which, edits, cut):
    from scenes.body_files import load_smpl
    from scenes.body_sequence import load_sequence

    d = tmp_path_factory.mktemp("fz")
    src = _sequence(d / "s.npz") if which == "sequence" else _smpl_npz(d / "m.npz")
    path = d / f"f{src.suffix}"
    path.write_bytes(_mutated(src.read_bytes(), edits, cut))
    _only_input_errors(load_sequence if which == "sequence" else load_smpl, path)


def test_fuzz_helpers_mutate():
    assert _mutated(b"abcdef", [(1, ord("X"))], 4) == b"aXcd" and _mutated(b"ab", [], None) == b"ab"


def test_outputs_get_the_permissions_of_the_users_umask(tmp_path):
    from engine.io import atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        os.umask(0o077)
        atomic_write_json(tmp_path / "b.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600
    # a writer that replaces the file itself (safetensors makes its own 0600 file) gets the umask too
    import torch

    from engine.guidance.objects.weights import save_network

    old = os.umask(0o022)
    try:
        save_network(torch.nn.Linear(2, 2), {}, tmp_path / "w.safetensors")
    finally:
        os.umask(old)
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o644
