import numpy as np
import pytest

from engine.data.align import pose_errors, umeyama
from engine.data.cameras import (Intrinsics, check_pose, look_at, opencv_to_opengl, opengl_to_opencv,
                                 qvec_to_rotmat, rotmat_to_qvec)
from engine.errors import InputError


def random_rotation(rng):
    q = rng.normal(size=4)
    return qvec_to_rotmat(q / np.linalg.norm(q))


def test_opengl_opencv_flip_y_and_z_and_invert_each_other():
    rng = np.random.default_rng(0)
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = random_rotation(rng), rng.normal(size=3)
    cv = opengl_to_opencv(c2w)
    assert np.allclose(cv[:, 0], c2w[:, 0]) and np.allclose(cv[:, 1], -c2w[:, 1]) and np.allclose(cv[:, 2], -c2w[:, 2])
    assert np.allclose(cv[:3, 3], c2w[:3, 3])
    assert np.allclose(opencv_to_opengl(cv), c2w)


def test_look_at_points_the_optical_axis_at_the_target():
    c2w = look_at([3.0, -2.0, 1.0], [0.0, 0.0, 0.0])
    fwd = -np.array([3.0, -2.0, 1.0]) / np.linalg.norm([3.0, -2.0, 1.0])
    assert np.allclose(c2w[:3, 2], fwd)
    assert c2w[2, 1] < 0  # image y (down) points against world up (+z)
    intr = Intrinsics(100, 80, 90.0, 90.0, 50.0, 40.0)
    w2c = np.linalg.inv(c2w)
    assert np.allclose(intr.project((w2c @ [0, 0, 0, 1.0])[:3]), [50.0, 40.0])


@pytest.mark.parametrize("model,dist", [("PINHOLE", ()), ("SIMPLE_RADIAL", (-0.08,)),
                                        ("OPENCV", (-0.1, 0.02, 0.001, -0.002))])
def test_project_and_pixel_directions_invert_each_other(model, dist):
    intr = Intrinsics(640, 480, 500.0, 505.0, 322.0, 238.0, model, dist)
    rng = np.random.default_rng(1)
    uv = rng.uniform([0, 0], [640, 480], size=(200, 2))
    d = intr.pixel_directions(uv)
    assert np.allclose(d[:, 2], 1.0)
    assert np.allclose(intr.project(d * rng.uniform(0.5, 5, size=(200, 1))), uv, atol=1e-6)


def test_scaled_intrinsics_keep_pixel_geometry():
    intr = Intrinsics(800, 600, 700.0, 700.0, 400.0, 300.0)
    half = intr.scaled(400, 300)
    p = np.array([0.3, -0.2, 2.0])
    assert np.allclose(half.project(p), intr.project(p) / 2)


def test_intrinsics_refuse_bad_values():
    with pytest.raises(ValueError):
        Intrinsics(10, 10, 1.0, 1.0, 5.0, 5.0, "FISHEYE")
    with pytest.raises(ValueError):
        Intrinsics(10, 10, 1.0, 1.0, 5.0, 5.0, "OPENCV", (0.1,))
    with pytest.raises(InputError, match="focal length"):
        Intrinsics(10, 10, -1.0, 1.0, 5.0, 5.0).check("cam.txt")
    with pytest.raises(InputError, match="not finite"):
        Intrinsics(10, 10, float("nan"), 1.0, 5.0, 5.0).check("cam.txt")


def test_check_pose_accepts_rigid_and_cleans_rounding():
    rng = np.random.default_rng(2)
    m = np.eye(4)
    m[:3, :3] = random_rotation(rng).astype(np.float32)
    out = check_pose(m, "x")
    assert np.abs(out[:3, :3].T @ out[:3, :3] - np.eye(3)).max() < 1e-12
    assert check_pose(m[:3], "x").shape == (4, 4)


@pytest.mark.parametrize("bad,msg", [
    (np.full((4, 4), np.nan), "NaN"),
    (np.diag([2.0, 2.0, 2.0, 1.0]), "not rigid"),
    (np.diag([1.0, 1.0, -1.0, 1.0]), "not rigid"),
    (np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1.0]]), "bottom row"),
    (np.eye(3), "shape"),
    ([["a"]], "numeric"),
])
def test_check_pose_refuses(bad, msg):
    with pytest.raises(InputError, match=msg):
        check_pose(bad, "poses.json")


def test_quaternion_round_trip():
    rng = np.random.default_rng(3)
    for _ in range(50):
        R = random_rotation(rng)
        q = rotmat_to_qvec(R)
        assert q[0] >= 0 and np.isclose(np.linalg.norm(q), 1)
        assert np.allclose(qvec_to_rotmat(q), R, atol=1e-10)


def test_umeyama_and_pose_errors_recover_a_similarity():
    rng = np.random.default_rng(4)
    ref = np.stack([look_at(rng.normal(size=3) * 3, [0, 0, 0]) for _ in range(12)])
    s, R, t = 0.37, random_rotation(rng), rng.normal(size=3)
    # est is ref seen through the inverse similarity: est centres = R^T (c - t) / s
    est = ref.copy()
    est[:, :3, 3] = (ref[:, :3, 3] - t) @ R / s
    est[:, :3, :3] = R.T @ ref[:, :3, :3]
    s2, R2, t2 = umeyama(est[:, :3, 3], ref[:, :3, 3])
    assert np.isclose(s2, s) and np.allclose(R2, R) and np.allclose(t2, t)
    err = pose_errors(est, ref)
    assert err["rotation_deg"].max() < 1e-5 and err["center_error"].max() < 1e-9
    est[3, :3, :3] = qvec_to_rotmat([np.cos(np.radians(1)), np.sin(np.radians(1)), 0, 0]) @ est[3, :3, :3]
    assert np.isclose(pose_errors(est, ref)["rotation_deg"][3], 2.0, atol=1e-6)
