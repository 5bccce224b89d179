import json
import math
import os
import shutil

import numpy as np
import pytest

from engine.data import detect_format, load_dataset
from engine.data.colmap import ColmapCamera, ColmapModel, ColmapPoints, image_from_c2w, load_colmap, read_model, write_model
from engine.data.images import cache_dir
from engine.data.nerfstudio import load_nerfstudio, write_nerfstudio
from engine.data.ply import read_ply_vertices, write_ply_points
from tests.conftest import tree_digest


def test_lego_counts_sizes_intrinsics(data):
    scene = load_dataset(data / "lego")
    assert scene.format == "blender"
    assert len(scene.splits["train"]) == 100 and len(scene.splits["test"]) == 200
    angle = json.loads((data / "lego" / "transforms_train.json").read_text())["camera_angle_x"]
    intr = scene.frames[0].intrinsics
    assert (intr.width, intr.height) == (800, 800)
    assert math.isclose(intr.fx, 400 / math.tan(angle / 2)) and intr.fx == intr.fy
    assert (intr.cx, intr.cy) == (400, 400)


def test_lego_cameras_all_look_at_the_origin(data):
    scene = load_dataset(data / "lego")
    for f in scene.frames:
        to_origin = -f.center / np.linalg.norm(f.center)
        assert np.degrees(np.arccos(np.clip(f.forward @ to_origin, -1, 1))) < 0.01, f.name
        # and the origin projects to the image centre
        w2c = np.linalg.inv(f.c2w)
        assert np.allclose(f.intrinsics.project(w2c[:3, 3]), [400, 400], atol=0.5)


def test_lego_rgba_composited_on_the_chosen_background(data):
    white = load_dataset(data / "lego")
    black = load_dataset(data / "lego", background=(0.0, 0.0, 0.0))
    i = white.splits["train"][0]
    w, b, rgba = white.image(i), black.image(i), white.image_rgba(i)
    assert w.shape == (800, 800, 3) and rgba.shape == (800, 800, 4)
    transparent = rgba[..., 3] == 0
    assert transparent.mean() > 0.3
    assert np.all(w[transparent] == 1.0) and np.all(b[transparent] == 0.0)
    opaque = rgba[..., 3] == 1
    assert np.allclose(w[opaque], b[opaque])


def test_lego_downscale_caches_outside_the_dataset(data):
    before = tree_digest(data / "lego" / "train")
    scene = load_dataset(data / "lego", downscale=4)
    f = scene.frames[0]
    assert (f.intrinsics.width, f.intrinsics.height) == (200, 200)
    assert math.isclose(f.intrinsics.fx, load_dataset(data / "lego").frames[0].intrinsics.fx / 4)
    img = scene.image_rgba(0)
    assert img.shape == (200, 200, 4)
    cached = sorted((cache_dir() / "downscaled").iterdir())
    assert cached and all(cache_dir() in p.parents for p in cached)
    mtimes = [p.stat().st_mtime_ns for p in cached]
    assert np.array_equal(scene.image_rgba(0), img)  # second read: from the cache, unchanged
    assert [p.stat().st_mtime_ns for p in sorted((cache_dir() / "downscaled").iterdir())] == mtimes
    # the 4x4 box average of the full image, premultiplied by alpha, is what the cache holds
    full = load_dataset(data / "lego").image_rgba(0).astype(np.float64)
    pm = np.concatenate([full[..., :3] * full[..., 3:], full[..., 3:]], -1).reshape(200, 4, 200, 4, 4).mean((1, 3))
    ours = img[..., :3] * img[..., 3:]
    assert np.abs(ours - pm[..., :3]).max() < 3 / 255
    assert tree_digest(data / "lego" / "train") == before


def test_fern_llff_counts_split_intrinsics(data):
    scene = load_dataset(data / "fern", downscale=8)
    assert scene.format == "llff" and len(scene.frames) == 20
    assert scene.splits["test"] == [0, 8, 16] and len(scene.splits["train"]) == 17
    hwf = np.load(data / "fern" / "poses_bounds.npy")[0, :15].reshape(3, 5)[:, 4]
    intr = scene.frames[0].intrinsics
    assert (intr.width, intr.height) == (504, 378)
    assert math.isclose(intr.fx, hwf[2] * 504 / hwf[1])
    assert scene.frames[0].image_path.parent.name == "images_8"  # the pre-made folder, not a re-scale
    assert scene.near_far.shape == (20, 2) and np.all(scene.near_far > 0)
    assert scene.image(3).shape == (378, 504, 3)


def test_fern_cameras_face_the_same_way(data):
    scene = load_dataset(data / "fern", downscale=8)
    fwd = np.array([f.forward for f in scene.frames])
    mean = fwd.mean(0) / np.linalg.norm(fwd.mean(0))
    assert np.degrees(np.arccos(fwd @ mean)).max() < 15
    # forward-facing capture: the scene (at the near bound) lies in front of every camera
    near = scene.near_far[:, 0].min()
    target = np.mean([f.center for f in scene.frames], 0) + mean * near * 2
    for f in scene.frames:
        assert (np.linalg.inv(f.c2w) @ np.append(target, 1))[2] > 0


def test_fern_default_is_largest_images_and_factor_16_goes_through_the_cache(data):
    assert load_dataset(data / "fern").frames[0].intrinsics.width == 1008
    s16 = load_dataset(data / "fern", downscale=16)
    assert s16.image(0).shape == (189, 252, 3)


def _fern_as_colmap(data, tmp_path, binary: bool):
    scene = load_dataset(data / "fern", downscale=8)
    (tmp_path / "images").mkdir()
    for f in scene.frames:
        shutil.copy(f.image_path, tmp_path / "images" / f.name)
    intr = scene.frames[0].intrinsics
    cams = {1: ColmapCamera(1, "OPENCV", intr.width, intr.height,
                            np.array([intr.fx, intr.fy * 1.01, intr.cx, intr.cy, 0.01, -0.002, 0.0003, 0.0001]))}
    images = {i + 1: image_from_c2w(i + 1, 1, f.name, f.c2w) for i, f in enumerate(scene.frames)}
    images[1].xys, images[1].point3D_ids = np.array([[10.5, 20.25], [30.0, 40.0]]), np.array([7, -1])
    rng = np.random.default_rng(0)
    pts = ColmapPoints(np.array([7, 9]), rng.normal(size=(2, 3)), np.array([[1, 2, 3], [250, 251, 252]], np.uint8),
                       np.array([0.5, 1.5]), [np.array([[1, 0]]), np.zeros((0, 2), np.int32)])
    write_model(ColmapModel(cams, images, pts), tmp_path / "sparse" / "0", binary=binary)
    return scene


@pytest.mark.parametrize("binary", [True, False])
def test_colmap_model_round_trip(data, tmp_path, binary):
    ref = _fern_as_colmap(data, tmp_path, binary)
    assert detect_format(tmp_path) == "colmap"
    scene = load_dataset(tmp_path)
    assert scene.format == "colmap" and len(scene.frames) == 20
    assert scene.splits["test"] == [0, 8, 16]
    for a, b in zip(scene.frames, ref.frames):
        assert a.name == b.name and np.allclose(a.c2w, b.c2w, atol=1e-12)
    intr = scene.frames[0].intrinsics
    assert intr.model == "OPENCV" and intr.dist == (0.01, -0.002, 0.0003, 0.0001)
    assert np.allclose(scene.points, read_model(tmp_path / "sparse" / "0").points.xyz)
    assert scene.point_colors.tolist() == [[1, 2, 3], [250, 251, 252]]
    model = read_model(tmp_path / "sparse" / "0")
    assert model.images[1].xys.tolist() == [[10.5, 20.25], [30.0, 40.0]]
    assert model.images[1].point3D_ids.tolist() == [7, -1]
    assert model.points.tracks[0].tolist() == [[1, 0]] and len(model.points.tracks[1]) == 0


def test_colmap_binary_agrees_with_pycolmap(data, tmp_path):
    """Our writer's files, read by COLMAP itself, give the same poses and cameras."""
    import pycolmap

    ref = _fern_as_colmap(data, tmp_path, binary=True)
    rec = pycolmap.Reconstruction(str(tmp_path / "sparse" / "0"))
    assert rec.num_images() == 20
    cam = rec.cameras[1]
    assert cam.model.name == "OPENCV" and np.allclose(cam.params[:2], [ref.frames[0].intrinsics.fx,
                                                                       ref.frames[0].intrinsics.fy * 1.01])
    for img in rec.images.values():
        f = next(f for f in ref.frames if f.name == img.name)
        w2c = np.eye(4)
        w2c[:3] = img.cam_from_world().matrix()
        assert np.allclose(np.linalg.inv(w2c), f.c2w, atol=1e-9)


def test_nerfstudio_round_trip_and_explicit_splits(data, tmp_path):
    lego = load_dataset(data / "lego")
    (tmp_path / "imgs").mkdir()
    frames = []
    for f in lego.frames[:10]:
        dst = tmp_path / "imgs" / f.image_path.name
        shutil.copy(f.image_path, dst)
        frames.append(type(f)(f.name, dst, f.intrinsics, f.c2w))
    write_ply_points(tmp_path / "pts.ply", np.arange(12.0).reshape(4, 3), np.arange(12).reshape(4, 3))
    write_nerfstudio(tmp_path / "transforms.json", frames, tmp_path, ply_file="pts.ply")
    scene = load_nerfstudio(tmp_path)
    assert scene.format == "nerfstudio" and len(scene.frames) == 10
    by_name = {f.image_path.name: f for f in frames}
    for f in scene.frames:
        assert np.allclose(f.c2w, by_name[f.image_path.name].c2w) and f.intrinsics == lego.frames[0].intrinsics
    assert np.allclose(scene.points, np.arange(12.0).reshape(4, 3)) and scene.point_colors[3].tolist() == [9, 10, 11]
    assert scene.splits["test"] == [0, 8]
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta["train_filenames"] = [e["file_path"] for e in meta["frames"][:7]]
    meta["test_filenames"] = [e["file_path"] for e in meta["frames"][7:]]
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    scene = load_nerfstudio(tmp_path / "transforms.json")
    assert len(scene.splits["train"]) == 7 and len(scene.splits["test"]) == 3


def test_ply_points_ascii_and_binary(tmp_path):
    xyz = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    write_ply_points(tmp_path / "a.ply", xyz)
    assert np.array_equal(np.stack([read_ply_vertices(tmp_path / "a.ply")[k] for k in "xyz"], 1), xyz)
    (tmp_path / "b.ply").write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
                                    "property float z\nend_header\n1 2 3\n4 5 6\n")
    v = read_ply_vertices(tmp_path / "b.ply")
    assert v["z"].tolist() == [3.0, 6.0]


def test_atomic_writes_leave_no_partial_file(tmp_path):
    from engine.io import atomic_path, atomic_write_json

    atomic_write_json(tmp_path / "m.json", {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "m.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["m.json"]


def test_ssim_matches_a_direct_2d_window_and_psnr_is_exact():
    import torch
    import torch.nn.functional as F

    from engine.losses import psnr, ssim

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(37, 29, 3, generator=g, dtype=torch.float64), torch.rand(37, 29, 3, generator=g, dtype=torch.float64)
    x = torch.arange(11, dtype=torch.float64) - 5
    w1 = torch.exp(-x * x / (2 * 1.5 ** 2))
    w1 /= w1.sum()
    w = (w1[:, None] * w1[None, :]).expand(3, 1, 11, 11)
    blur = lambda t: F.conv2d(t.permute(2, 0, 1)[None], w, padding=5, groups=3)  # noqa: E731
    mx, my = blur(a), blur(b)
    sxx, syy, sxy = blur(a * a) - mx ** 2, blur(b * b) - my ** 2, blur(a * b) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    want = (((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))).mean()
    assert torch.allclose(ssim(a, b), want, atol=1e-12)
    assert torch.allclose(ssim(a, a), torch.tensor(1.0, dtype=torch.float64))
    assert psnr(torch.zeros(4, 4, 3), torch.full((4, 4, 3), 0.1)) == pytest.approx(20.0)
