"""The bad-input corpus: each case is one line on stderr naming the file and the problem,
exit code 2, no traceback, and the input left exactly as it was."""
import json
import shutil
import struct

import numpy as np
import pytest
from PIL import Image

from tests.conftest import assert_one_clear_line, run_cli, tree_digest


def blender_dataset(root, n=3, size=8):
    """A tiny valid Blender-format scene."""
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        frames = []
        for k in range(n):
            Image.new("RGBA", (size, size), (200, 10, 10, 255)).save(root / split / f"r_{k}.png")
            c2w = np.eye(4)
            c2w[:3, 3] = [0, 0, 4 + k]
            frames.append({"file_path": f"./{split}/r_{k}", "transform_matrix": c2w.tolist()})
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))
    return root


def edit_json(path, fn):
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


def llff_dataset(data, root, drop_image=False, poses=None):
    shutil.copytree(data / "fern" / "images_8", root / "images_8")
    np.save(root / "poses_bounds.npy", np.load(data / "fern" / "poses_bounds.npy") if poses is None else poses)
    if drop_image:
        (root / "images_8" / "image019.png").unlink()
    return root


def colmap_dataset(data, root, binary=True):
    from engine.data import load_dataset
    from engine.data.colmap import ColmapCamera, ColmapModel, ColmapPoints, image_from_c2w, write_model

    scene = load_dataset(data / "fern", downscale=8)
    (root / "images").mkdir(parents=True)
    for f in scene.frames[:4]:
        shutil.copy(f.image_path, root / "images" / f.name)
    i = scene.frames[0].intrinsics
    cams = {1: ColmapCamera(1, "PINHOLE", i.width, i.height, np.array([i.fx, i.fy, i.cx, i.cy]))}
    imgs = {k + 1: image_from_c2w(k + 1, 1, f.name, f.c2w) for k, f in enumerate(scene.frames[:4])}
    write_model(ColmapModel(cams, imgs, ColmapPoints.empty()), root / "sparse" / "0", binary=binary)
    return root


def truncate(path, keep):
    path.write_bytes(path.read_bytes()[:keep])


def garbage(path):
    path.write_bytes(b"this is not an image at all" * 10)


def resize_one(path):
    Image.open(path).resize((4, 4)).save(path)


def noise_photos(root, n, sizes=None):
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        w, h = sizes[k] if sizes else (64, 48)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"p{k}.png")
    return root


def _setup(case, tmp, data):
    """Build the input for `case`; return (args, input folder to watch, expected message parts)."""
    d = tmp / "in"
    if case == "missing folder":
        return ["inspect", tmp / "nope"], None, ["nope", "dataset folder not found"]
    if case == "empty folder":
        d.mkdir()
        return ["inspect", d], d, ["in", "no dataset found"]
    if case == "invalid JSON":
        blender_dataset(d)
        (d / "transforms_train.json").write_text('{"camera_angle_x": 0.69, "frames": [')
        return ["inspect", d], d, ["transforms_train.json", "not valid JSON"]
    if case == "missing camera_angle_x":
        blender_dataset(d)
        edit_json(d / "transforms_train.json", lambda m: m.pop("camera_angle_x"))
        return ["inspect", d], d, ["transforms_train.json", "missing field 'camera_angle_x'"]
    if case == "frame without transform_matrix":
        blender_dataset(d)
        edit_json(d / "transforms_test.json", lambda m: m["frames"][1].pop("transform_matrix"))
        return ["inspect", d], d, ["transforms_test.json", "missing field 'transform_matrix' in frame 1"]
    if case == "NaN pose":
        blender_dataset(d)
        edit_json(d / "transforms_train.json", lambda m: m["frames"][2]["transform_matrix"][0].__setitem__(3, "NaN"))
        return ["inspect", d], d, ["transforms_train.json (frame 2)", "NaN"]
    if case == "non-rigid pose":
        blender_dataset(d)
        edit_json(d / "transforms_train.json",
                  lambda m: m["frames"][0].__setitem__("transform_matrix", (np.diag([1.5, 1.5, 1.5, 1])).tolist()))
        return ["inspect", d], d, ["transforms_train.json (frame 0)", "not rigid"]
    if case == "path escapes the dataset":
        blender_dataset(d)
        edit_json(d / "transforms_train.json", lambda m: m["frames"][0].__setitem__("file_path", "../../etc/passwd"))
        return ["inspect", d], d, ["transforms_train.json", "escapes the dataset folder"]
    if case == "missing image":
        blender_dataset(d)
        (d / "train" / "r_1.png").unlink()
        return ["inspect", d], d, ["transforms_train.json", "image file './train/r_1' not found"]
    if case == "unreadable image":
        blender_dataset(d)
        garbage(d / "test" / "r_2.png")
        return ["inspect", d], d, ["r_2.png", "not a readable image"]
    if case == "truncated image":
        blender_dataset(d, size=64)
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 4), dtype=np.uint8)).save(d / "train" / "r_1.png")
        truncate(d / "train" / "r_1.png", 200)
        return ["inspect", d, "--check-images"], d, ["r_1.png", "corrupt or truncated image"]
    if case == "images of different sizes":
        blender_dataset(d)
        resize_one(d / "train" / "r_2.png")
        return ["inspect", d], d, ["r_2.png", "image is 4x4 but its camera is 8x8"]
    if case == "non-numeric field":
        blender_dataset(d)
        edit_json(d / "transforms_train.json", lambda m: m.__setitem__("camera_angle_x", "wide"))
        return ["inspect", d], d, ["transforms_train.json", "'camera_angle_x' is not a number"]
    if case == "nerfstudio focal not a number":
        d.mkdir()
        Image.new("RGB", (8, 8)).save(d / "a.png")
        (d / "transforms.json").write_text(json.dumps({"fl_x": "big", "frames": [
            {"file_path": "a.png", "transform_matrix": np.eye(4).tolist()}]}))
        return ["inspect", d], d, ["transforms.json (frame 0)", "field 'fl_x' is not a number"]
    if case == "LLFF array of wrong shape":
        llff_dataset(data, d, poses=np.zeros((20, 15)))
        return ["inspect", d], d, ["poses_bounds.npy", "expected an N×17 numeric array, got shape (20, 15)"]
    if case == "LLFF pose count differs from images":
        llff_dataset(data, d, drop_image=True)
        return ["inspect", d, "--downscale", "8"], d, ["poses_bounds.npy", "has 20 poses but", "has 19 images"]
    if case == "COLMAP truncated images.bin":
        colmap_dataset(data, d)
        truncate(d / "sparse" / "0" / "images.bin", 150)
        return ["inspect", d], d, ["images.bin", "file is truncated"]
    if case == "COLMAP unsupported camera model":
        colmap_dataset(data, d, binary=False)
        p = d / "sparse" / "0" / "cameras.txt"
        p.write_text(p.read_text().replace("PINHOLE", "OPENCV_FISHEYE"))
        return ["inspect", d], d, ["cameras.txt", "unsupported camera model OPENCV_FISHEYE"]
    if case == "COLMAP image with unknown camera":
        colmap_dataset(data, d)
        raw = bytearray((d / "sparse" / "0" / "images.bin").read_bytes())
        raw[8 + 4 + 56:8 + 4 + 56 + 4] = struct.pack("<i", 42)  # camera_id of the first image
        (d / "sparse" / "0" / "images.bin").write_bytes(bytes(raw))
        return ["inspect", d], d, ["images.bin", "refers to camera 42"]
    if case == "downscale not positive":
        blender_dataset(d)
        return ["inspect", d, "--downscale", "0"], d, ["--downscale 0.0: must be a number above 0"]
    if case == "sfm on two photos":
        noise_photos(d, 2)
        return ["sfm", d, "--out", tmp / "run"], d, ["in", "only 2 image(s)", "at least 3"]
    if case == "sfm on photos of different sizes":
        noise_photos(d, 3, sizes=[(64, 48), (64, 48), (32, 32)])
        return ["sfm", d, "--out", tmp / "run"], d, ["in", "images of different sizes in one camera", "p2.png is 32x32"]
    if case == "sfm on photos that do not overlap":
        noise_photos(d, 3)
        return ["sfm", d, "--out", tmp / "run"], d, ["in", "registered 0 of 3 images"]
    if case == "sfm with a corrupt photo":
        noise_photos(d, 3)
        garbage(d / "p1.png")
        return ["sfm", d, "--out", tmp / "run"], d, ["p1.png", "not a readable image"]
    if case == "video file missing":
        return ["sfm", "--video", tmp / "clip.mp4", "--out", tmp / "run"], None, ["clip.mp4", "not found"]
    if case == "video not decodable":
        d.mkdir()
        (d / "clip.mp4").write_text("not a video")
        return ["sfm", "--video", d / "clip.mp4", "--out", tmp / "run"], d, ["clip.mp4", "cannot decode video"]
    if case == "output inside the input":
        noise_photos(d, 3)
        return ["sfm", d, "--out", d / "run"], d, ["run", "overlaps the input"]
    raise AssertionError(case)


CASES = ["missing folder", "empty folder", "invalid JSON", "missing camera_angle_x", "frame without transform_matrix",
         "NaN pose", "non-rigid pose", "path escapes the dataset", "missing image", "unreadable image",
         "truncated image", "images of different sizes", "non-numeric field", "nerfstudio focal not a number",
         "LLFF array of wrong shape", "LLFF pose count differs from images", "COLMAP truncated images.bin",
         "COLMAP unsupported camera model", "COLMAP image with unknown camera", "downscale not positive",
         "sfm on two photos", "sfm on photos of different sizes", "sfm on photos that do not overlap",
         "sfm with a corrupt photo", "video file missing", "video not decodable", "output inside the input"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clear_line(case, tmp_path, data):
    args, watched, expected = _setup(case, tmp_path, data)
    before = tree_digest(watched) if watched else None
    assert_one_clear_line(run_cli(*args), expected)
    if watched:
        assert tree_digest(watched) == before, "the input was modified"


def test_debug_shows_the_traceback(tmp_path):
    r = run_cli("inspect", tmp_path / "nope", "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr and "InputError" in r.stderr


def test_an_existing_run_is_not_overwritten_silently(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    d = noise_photos(tmp_path / "in", 3)
    r = run_cli("sfm", d, "--out", run)
    assert r.returncode == 2 and "already holds a run; pass --overwrite" in r.stderr
    assert (run / "config.json").read_text() == "{}"


def test_a_folder_that_is_not_a_run_is_never_written_into(tmp_path):
    out = tmp_path / "project"
    (out / "images").mkdir(parents=True)
    (out / "images" / "mine.txt").write_text("user data")
    before = tree_digest(out)
    d = noise_photos(tmp_path / "in", 3)
    for extra in ([], ["--overwrite"]):
        r = run_cli("sfm", d, "--out", out, *extra)
        assert r.returncode == 2 and "holds no lumen3d run" in r.stderr
    assert tree_digest(out) == before


def test_usage_errors_exit_nonzero():
    assert run_cli("no-such-job").returncode == 2
    assert run_cli("sfm").returncode == 2  # neither photos nor --video
