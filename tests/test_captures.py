"""Captures from elsewhere: instant-ngp's transforms.json as it is published (frames listed without
their images, blurry frames, its keys), and distorted cameras without points through every start
of the Gaussian trainer and through both trainers."""
import json
import math
import shutil

import numpy as np
import pytest

from engine.errors import InputError
from tests.conftest import assert_one_clear_line, quality, run_cli


@pytest.fixture(scope="module")
def lego8(data):
    from engine.data import load_dataset

    return load_dataset(data / "lego", downscale=8)


def _ngp_capture(lego8, root, listed=16, present=12, **extra):
    """lego's first `listed` training frames in instant-ngp's layout, with only `present` images."""
    from engine.data.cameras import opencv_to_opengl
    from engine.io import write_png

    (root / "images").mkdir(parents=True)
    frames = []
    for k in range(listed):
        f = lego8.frames[lego8.splits["train"][k]]
        name = f"images/r_{k}.png"
        if k < present:
            write_png((lego8.image_rgba(lego8.splits["train"][k]) * 255).round().astype(np.uint8), root / name)
        # instant-ngp accepts paths without an extension and Windows separators
        path = name[:-4] if k == 1 else name.replace("/", "\\") if k == 2 else f"./{name}"
        frames.append({"file_path": path, "sharpness": 30.0 + k, "transform_matrix": opencv_to_opengl(f.c2w).tolist()})
    i = lego8.frames[0].intrinsics
    meta = {"camera_angle_x": 2 * math.atan(0.5 * i.width / i.fx), "aabb_scale": 4, "scale": 0.5,
            "offset": [0.5, 0.5, 0.5], "sharpen": 0.0, "white_transparent": True, "frames": frames, **extra}
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def test_instant_ngp_capture_loads_like_instant_ngp_reads_it(lego8, tmp_path):
    from engine.data import load_dataset

    root = _ngp_capture(lego8, tmp_path / "ngp")
    scene = load_dataset(root)
    assert len(scene.frames) == 12
    by_name = {f.name: f for f in scene.frames}
    assert {"images/r_1", "images/r_2.png", "images/r_0.png"} <= set(by_name)
    for k in (0, 1, 2, 7):
        f = lego8.frames[lego8.splits["train"][k]]
        got = next(g for g in scene.frames if g.name.startswith(f"images/r_{k}"))
        assert np.allclose(got.c2w, f.c2w, atol=1e-6) and got.intrinsics.fx == pytest.approx(f.intrinsics.fx)
    missing, ignored = scene.warnings
    assert "skipped 4 of 16 listed frames whose image is missing" in missing and "r_12.png" in missing
    assert "sharpen" in ignored and "white_transparent" in ignored and "aabb_scale" not in ignored
    # instant-ngp's unit cube, p·scale + offset ∈ [0, 1]³, in the file's coordinates; aabb_scale > 1: unbounded
    box = scene.extra["scene_box"]
    assert np.allclose(box["centre"], 0) and box["half"] == [1.0] * 3 and box["unbounded"]
    with pytest.raises(InputError, match="r_12.png' not found"):
        load_dataset(root, strict=True)


def test_instant_ngp_keys_focal_lengths_n_frames_and_sharpness(lego8, tmp_path):
    from engine.data import load_dataset

    i = lego8.frames[0].intrinsics
    fov = math.degrees(2 * math.atan(0.5 * i.width / i.fx))
    root = _ngp_capture(lego8, tmp_path / "a", listed=12, present=12, x_fov=fov, n_frames=10,
                        sharpness_discard_threshold=0.5, offset=0.25, scale=0.25, aabb_scale=1)
    meta = json.loads((root / "transforms.json").read_text())
    meta["frames"][4]["sharpness"] = 1.0  # far blurrier than its neighbours (30..41)
    meta["frames"][6]["fl_x"] = 2 * i.fx  # a per-frame focal length wins over the shared one
    meta.pop("camera_angle_x")
    (root / "transforms.json").write_text(json.dumps(meta))
    scene = load_dataset(root)
    names = sorted(f.name for f in scene.frames)
    assert len(names) == 9 and not any(n.startswith("images/r_4") for n in names)  # n_frames 10, r_4 blurry
    assert not any(n.startswith(("images/r_10", "images/r_11")) for n in names)  # natural order: r_10 > r_9
    fx = {f.name: f.intrinsics.fx for f in scene.frames}
    assert fx["images/r_0.png"] == pytest.approx(i.fx) and fx["images/r_6.png"] == pytest.approx(2 * i.fx)
    assert any("blurrier" in w for w in scene.warnings)
    box = scene.extra["scene_box"]
    assert np.allclose(box["centre"], 1.0) and box["half"] == [2.0] * 3 and not box["unbounded"]


def test_too_few_frames_left_and_strict_are_one_line_errors(lego8, tmp_path):
    root = _ngp_capture(lego8, tmp_path / "few", listed=16, present=2)
    assert_one_clear_line(run_cli("inspect", root), ["transforms.json", "only 2 of 16 listed frames"])
    root = _ngp_capture(lego8, tmp_path / "most", listed=16, present=12)
    r = run_cli("inspect", root)
    assert r.returncode == 0 and "skipped 4 of 16 listed frames" in r.stderr + r.stdout, r.stderr[-2000:]
    assert_one_clear_line(run_cli("inspect", root, "--strict"), ["transforms.json", "r_12.png", "not found"])


def test_training_on_an_instant_ngp_capture_logs_what_it_skipped(lego8, tmp_path):
    root = _ngp_capture(lego8, tmp_path / "ngp")
    r = run_cli("train", "nerf", root, "--out", tmp_path / "run", "--max-steps", "2", "--eval-views", "1",
                "--video-frames", "0", "--mesh-resolution", "0")
    assert r.returncode == 0, r.stderr[-3000:]
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "skipped 4 of 16 listed frames" in log and "ignored keys" in log
    meta = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert meta["bounded"] is False  # aabb_scale 4


# ---------------------------------------------------------------------------- distorted cameras

LENSES = {"PINHOLE": (), "SIMPLE_RADIAL": (-0.1,), "OPENCV": (-0.12, 0.03, 0.001, -0.0008)}


@pytest.fixture(scope="module")
def fern_small(data):
    from engine.data import load_dataset

    return load_dataset(data / "fern", downscale=16)  # 252×189: enough texture for SIFT


@pytest.fixture(scope="module")
def captures(fern_small, lego8, tmp_path_factory):
    """Each lens on fern (RGB, 20 photos, a point cloud) and on lego (RGBA, 24 photos, no points)."""
    from engine.data.distorted_capture import write_distorted_capture

    root = tmp_path_factory.mktemp("captures")
    points = np.random.default_rng(0).normal(size=(500, 3)) + fern_small.frames[0].center + 3 * fern_small.frames[0].forward
    out = {}
    for model, dist in LENSES.items():
        out["fern", model] = write_distorted_capture(fern_small, root / f"fern-{model}", model, dist, points=points)
        out["lego", model] = write_distorted_capture(lego8, root / f"lego-{model}", model, dist,
                                                     frames=lego8.splits["train"][:24])
        if model == "SIMPLE_RADIAL":  # nerfstudio's writer says OPENCV with k2 = p1 = p2 = 0; say it as COLMAP would
            for path in (out["fern", model], out["lego", model]):
                meta = json.loads((path / "transforms.json").read_text())
                meta.update(camera_model="SIMPLE_RADIAL")
                for k in ("k2", "p1", "p2"):
                    meta.pop(k)
                (path / "transforms.json").write_text(json.dumps(meta))
    return out


def test_undistortion_recovers_the_pinhole_photo(fern_small, captures):
    from engine.data import load_dataset
    from engine.data.undistort import undistort_image

    for model in ("SIMPLE_RADIAL", "OPENCV"):
        cap = load_dataset(captures["fern", model])
        assert cap.frames[0].intrinsics.model == model and cap.points is not None
        pin = cap.undistorted()
        assert not pin.distorted and pin.frames[0].image_path.is_file()
        assert pin.frames[0].image_path.resolve().parents[1] != captures["fern", model].resolve()  # never inside the input
        ref = undistort_image(fern_small.image_rgba(0), fern_small.frames[0].intrinsics, pin.frames[0].intrinsics)
        err = np.abs(pin.image(0) - ref[..., :3]).mean()
        quality(f"undistorted {model} photo against the pinhole original, mean abs", err, "<", 0.02)


def _train(kind, data, tmp_path, **options):
    from engine.jobs.train import run_training
    from engine.registry import KINDS

    cfg = KINDS[kind].config(data=data, out=tmp_path, max_steps=3, eval_views=1, video_frames=0,
                             overwrite=True, **options)
    return run_training(cfg)


@pytest.mark.parametrize("model", list(LENSES))
def test_every_lens_through_every_gaussian_start_and_both_trainers(captures, model, tmp_path):
    fern, lego = captures["fern", model], captures["lego", model]
    starts = {"auto": "500 SfM points", "points": "500 SfM points", "sfm": "triangulated from the dataset's poses",
              "box": "2000 random points"}
    for init, how in starts.items():
        m = _train("gaussians", fern, tmp_path / init, init=init, init_points=2000)
        assert m["steps"] == 3 and np.isfinite(m["test"]["psnr"]), (init, m)
        assert how in m["init"]["from"], (init, m["init"])
    m = _train("gaussians", lego, tmp_path / "hull", init_points=2000)  # RGBA: auto is the visual hull
    assert "silhouettes" in m["init"]["from"], m["init"]
    for init, problem in (("frustum", "near/far bounds"), ("hull", "alpha channel")):
        with pytest.raises(InputError, match=problem):
            _train("gaussians", fern, tmp_path / f"bad-{init}", init=init)
    for data in (fern, lego):
        m = _train("nerf", data, tmp_path / f"nerf-{data.name}", mesh_resolution=0)
        assert m["steps"] == 3 and np.isfinite(m["test"]["psnr"])


def test_the_reported_case_distorted_camera_without_points_trains(captures, tmp_path):
    """`lumen3d train gaussians DATA` on an OPENCV capture with no point cloud died in triangulation."""
    root = tmp_path / "cap"
    shutil.copytree(captures["fern", "OPENCV"], root)
    meta = json.loads((root / "transforms.json").read_text())
    del meta["ply_file_path"]
    (root / "transforms.json").write_text(json.dumps(meta))
    assert meta["camera_model"] == "OPENCV"
    r = run_cli("train", "gaussians", root, "--out", tmp_path / "run", "--max-steps", "2", "--eval-views", "1",
                "--video-frames", "0")
    assert r.returncode == 0, r.stderr[-3000:]
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "undistorted the photos of OPENCV cameras" in log and "triangulated" in log
