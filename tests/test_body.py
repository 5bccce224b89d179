"""Our linear blend skinning and the safe readers of SMPL-family files."""
import math
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
import torch
from scipy.spatial.transform import Rotation

from engine.errors import InputError
from scenes.body import BodyModel, lbs, rodrigues


def test_rodrigues_matches_scipy_including_zero_and_tiny_angles():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(200, 3, generator=g, dtype=torch.float64) * 2
    v[0] = 0
    v[1] = torch.tensor([1e-9, -2e-9, 0.5e-9], dtype=torch.float64)
    ours = rodrigues(v).numpy()
    ref = Rotation.from_rotvec(v.numpy()).as_matrix()
    assert np.abs(ours - ref).max() < 1e-12


def chain_model():
    """Three joints along +y (0, 1, 2 m) and a vertex on each bone, one blended between two."""
    v = torch.tensor([[0, 0.5, 0], [0, 1.5, 0], [0, 2.5, 0], [0, 1.5, 0]], dtype=torch.float64)
    w = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0]], dtype=torch.float64)
    J_reg = torch.zeros(3, 4, dtype=torch.float64)
    J_reg[0, 0], J_reg[1, 0], J_reg[1, 1], J_reg[2, 1], J_reg[2, 2] = 0, 0.5, 0.5, 0.5, 0.5  # (0,1,0), (0,2,0)
    return BodyModel(v, torch.zeros(4, 3, 1, dtype=torch.float64), torch.zeros(4, 3, 0, dtype=torch.float64), J_reg,
                     w, torch.tensor([-1, 0, 1]), torch.zeros(0, 3, dtype=torch.long))


def test_two_bone_chain_by_hand():
    m = chain_model().check("chain")
    pose = torch.zeros(1, 3, 3, dtype=torch.float64)
    pose[0, 1, 2] = math.pi / 2  # the middle joint turns 90° about z: everything above it swings to -x
    v, j = m(torch.zeros(1, 1, dtype=torch.float64), pose, torch.tensor([[10.0, 0, 0]], dtype=torch.float64))
    expect_j = np.array([[0, 0, 0], [0, 1, 0], [-1, 1, 0]]) + [10, 0, 0]
    expect_v = np.array([[0, 0.5, 0], [-0.5, 1, 0], [-1.5, 1, 0], [-0.25, 1.25, 0]]) + [10, 0, 0]
    # the blended vertex: the average of staying at (0, 1.5) and turning to (-0.5, 1)
    assert np.abs(j[0].numpy() - expect_j).max() < 1e-12
    assert np.abs(v[0].numpy() - expect_v).max() < 1e-12


def test_shape_and_pose_blend_shapes_and_gradients():
    g = torch.Generator().manual_seed(1)
    V, J, S = 30, 4, 5
    args = dict(v_template=torch.randn(V, 3, generator=g, dtype=torch.float64),
                shapedirs=torch.randn(V, 3, S, generator=g, dtype=torch.float64) * 0.1,
                posedirs=torch.randn(V, 3, 9 * (J - 1), generator=g, dtype=torch.float64) * 0.01,
                J_regressor=torch.softmax(torch.randn(J, V, generator=g, dtype=torch.float64), 1),
                parents=torch.tensor([-1, 0, 1, 1]),
                weights=torch.softmax(torch.randn(V, J, generator=g, dtype=torch.float64) * 3, 1))
    betas = torch.randn(2, S, generator=g, dtype=torch.float64, requires_grad=True)
    pose = (torch.randn(2, J, 3, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    # zero pose and zero shape give the template; shape moves the template linearly
    v0, _ = lbs(torch.zeros(1, S, dtype=torch.float64), torch.zeros(1, J, 3, dtype=torch.float64), **args)
    assert torch.allclose(v0[0], args["v_template"], atol=1e-12)
    b = torch.zeros(1, S, dtype=torch.float64)
    b[0, 2] = 1.0
    v1, _ = lbs(b, torch.zeros(1, J, 3, dtype=torch.float64), **args)
    assert torch.allclose(v1[0] - v0[0], args["shapedirs"][..., 2], atol=1e-12)
    assert torch.autograd.gradcheck(lambda be, po: lbs(be, po, **args)[0], (betas, pose))


class _FakeCh:
    """Pickles like chumpy.ch.Ch: a Python-object reduce with the value in state['x']."""

    def __init__(self, x):
        self.x = x

    def __reduce__(self):
        import copyreg

        return copyreg._reconstructor, (type(self), object, None), {"x": self.x, "_dirty_vars": set()}


@pytest.fixture
def fake_chumpy(monkeypatch):
    mod = types.ModuleType("chumpy.ch")
    _FakeCh.__module__, _FakeCh.__qualname__, _FakeCh.__name__ = "chumpy.ch", "Ch", "Ch"
    mod.Ch = _FakeCh
    monkeypatch.setitem(sys.modules, "chumpy", types.ModuleType("chumpy"))
    monkeypatch.setitem(sys.modules, "chumpy.ch", mod)
    return _FakeCh


def smpl_like_dict(Ch):
    m = chain_model()
    return {"v_template": Ch(m.v_template.numpy()), "shapedirs": Ch(m.shapedirs.numpy()),
            "posedirs": m.posedirs.numpy(), "J_regressor": scipy.sparse.csc_matrix(m.J_regressor.numpy()),
            "weights": Ch(m.weights.numpy()), "kintree_table": np.array([[4294967295, 0, 1], [0, 1, 2]]),
            "f": np.zeros((0, 3), np.uint32), "bs_type": "lrotmin"}


def test_smpl_pickle_with_chumpy_and_sparse_loads_without_chumpy(fake_chumpy, tmp_path):
    from scenes.body_files import load_smpl

    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(pickle.dumps(smpl_like_dict(fake_chumpy), protocol=2))
    before = path.read_bytes()
    model = load_smpl(path)
    ref = chain_model()
    for k in ("v_template", "shapedirs", "J_regressor", "weights"):
        assert np.allclose(getattr(model, k).numpy(), getattr(ref, k).numpy()), k
    assert model.parents.tolist() == [-1, 0, 1]
    assert path.read_bytes() == before


def test_a_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    from scenes.body_files import load_gmm_prior, load_smpl

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return os.system, (f"touch {marker}",)

    for name, loader in (("evil.pkl", load_smpl), ("gmm.pkl", load_gmm_prior)):
        path = tmp_path / name
        path.write_bytes(pickle.dumps({"v_template": Evil(), "means": Evil()}))
        with pytest.raises(InputError, match="refused global"):
            loader(path)
    assert not marker.exists()


def test_gmm_prior_file(tmp_path):
    from scenes.body_files import load_gmm_prior

    g = np.random.default_rng(0)
    gmm = {"means": g.normal(size=(8, 69)), "covars": np.stack([np.eye(69)] * 8), "weights": np.full(8, 1 / 8)}
    (tmp_path / "gmm_08.pkl").write_bytes(pickle.dumps(gmm, protocol=2))
    d = load_gmm_prior(tmp_path / "gmm_08.pkl")
    assert d["means"].shape == (8, 69) and np.allclose(d["weights"].sum(), 1)
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps({"means": gmm["means"], "covars": gmm["covars"][:3],
                                                     "weights": gmm["weights"]}))
    with pytest.raises(InputError, match="shapes do not agree"):
        load_gmm_prior(tmp_path / "bad.pkl")


def test_posed_points_equal_the_regressor_on_skinned_vertices():
    """Keypoints placed from precomputed moments equal blends of fully skinned vertices (with pose blend shapes)."""
    from scenes.body import BodyModel

    g = torch.Generator().manual_seed(4)
    V, J, S, K = 40, 5, 3, 6
    d = torch.float64
    m = BodyModel(torch.randn(V, 3, generator=g, dtype=d), torch.randn(V, 3, S, generator=g, dtype=d) * 0.1,
                  torch.randn(V, 3, 9 * (J - 1), generator=g, dtype=d) * 0.01,
                  torch.softmax(torch.randn(J, V, generator=g, dtype=d), 1), torch.softmax(torch.randn(V, J, generator=g, dtype=d) * 3, 1),
                  torch.tensor([-1, 0, 1, 1, 3]), torch.zeros(0, 3, dtype=torch.long),
                  keypoint_regressor=torch.softmax(torch.randn(K, V, generator=g, dtype=d) * 4, 1)).check("random")
    betas = torch.randn(3, S, generator=g, dtype=d)
    pose = torch.randn(3, J, 3, generator=g, dtype=d) * 0.7
    transl = torch.randn(3, 3, generator=g, dtype=d)
    v, j = m(betas, pose, transl)
    j2, kp = m.joints_and_keypoints(betas, pose, transl)
    assert torch.allclose(j, j2, atol=1e-12)
    assert torch.allclose(kp, torch.einsum("kv,bvc->bkc", m.keypoint_regressor, v), atol=1e-12)
