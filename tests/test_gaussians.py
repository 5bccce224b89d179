"""Gaussian scenes: Inria PLY and .splat files, densification, training, resume after SIGKILL."""
import json
import math

import numpy as np
import pytest
import torch

from engine.strategies import ADCStrategy, MCMCStrategy
from scenes import gaussians as G
from tests.conftest import quality, run_cli


def random_params(n, degree, seed=0):
    g = torch.Generator().manual_seed(seed)
    K = (degree + 1) ** 2
    return G.new_params(torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g) - 3,
                        torch.randn(n, 4, generator=g), torch.randn(n, generator=g),
                        torch.randn(n, 1, 3, generator=g), torch.randn(n, K - 1, 3, generator=g))


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_ply_round_trip_is_bit_exact_in_the_inria_layout(tmp_path, degree):
    p = random_params(37, degree)
    G.save_ply(p, tmp_path / "a.ply")
    raw = (tmp_path / "a.ply").read_bytes()
    header, body = raw.split(b"end_header\n", 1)
    names = [ln.split()[-1] for ln in header.decode().splitlines() if ln.startswith("property")]
    assert names == G.ply_property_names(degree)
    assert b"format binary_little_endian 1.0" in header and b"element vertex 37" in header
    assert len(body) == 37 * len(names) * 4
    rows = np.frombuffer(body, "<f4").reshape(37, len(names))
    # f_rest is channel-major: all red coefficients first
    if degree:
        K1 = (degree + 1) ** 2 - 1
        assert np.array_equal(rows[:, 9:9 + K1], p["sh_rest"].detach()[:, :, 0].numpy())
    assert np.array_equal(rows[:, names.index("opacity")], p["opacity_logits"].detach().numpy())
    back = G.load_ply(tmp_path / "a.ply")
    for k in G.PARAM_NAMES:
        assert torch.equal(back[k], p[k].detach()), k


def test_a_ply_from_another_tool_loads(tmp_path):
    # property order shuffled and an unknown extra property, as some exporters write
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3", "extra"]
    vals = np.arange(2 * len(names), dtype="<f4").reshape(2, len(names))
    header = "ply\nformat binary_little_endian 1.0\nelement vertex 2\n" + \
             "".join(f"property float {n}\n" for n in names) + "end_header\n"
    (tmp_path / "b.ply").write_bytes(header.encode() + vals.tobytes())
    p = G.load_ply(tmp_path / "b.ply")
    assert p["sh_rest"].shape == (2, 0, 3)
    assert p["means"][1].tolist() == [15.0, 16.0, 17.0] and p["opacity_logits"][0].item() == 6.0


def test_splat_layout(tmp_path):
    p = random_params(5, 1)
    p["log_scales"].data[2] = 1.0  # the biggest: first in the file
    p["opacity_logits"].data[2] = 3.0
    G.save_splat(p, tmp_path / "a.splat")
    raw = (tmp_path / "a.splat").read_bytes()
    assert len(raw) == 5 * 32
    rec = np.frombuffer(raw, dtype=[("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
    assert np.allclose(rec["pos"][0], p["means"].detach()[2].numpy())
    assert np.allclose(rec["scale"][0], math.e)
    rgb = (G.sh_dc_to_rgb(p["sh_dc"].detach()[2, 0]).clamp(0, 1) * 255).round()
    assert rec["rgba"][0][:3].tolist() == rgb.int().tolist()
    assert rec["rgba"][0][3] == round(255 / (1 + math.exp(-3.0)))
    q = p["quats"].detach()[2] / p["quats"].detach()[2].norm()
    assert rec["rot"][0].tolist() == (q * 128 + 128).round().clamp(0, 255).int().tolist()


def _opts(params, lr=1e-3):
    return {k: torch.optim.Adam([v], lr=lr, eps=1e-15) for k, v in params.items()}


def test_adc_clones_splits_and_prunes_crafted_gaussians():
    p = random_params(4, 1)
    opts = _opts(p)
    (sum(v.sum() for v in p.values())).backward()  # give Adam a state to keep aligned
    for o in opts.values():
        o.step()
    with torch.no_grad():
        p["log_scales"].data[:] = math.log(0.001)
        p["log_scales"].data[1] = math.log(0.5)  # large
        p["opacity_logits"].data[:] = 2.0
        p["opacity_logits"].data[3] = -10.0  # transparent
    s = ADCStrategy(refine_start=0, refine_stop=1000, refine_every=10, reset_every=10_000)
    s.grad_sum = torch.tensor([1.0, 1.0, 0.0, 0.0])
    s.grad_count = torch.ones(4)
    s.max_radii = torch.zeros(4)
    means_before = p["means"].detach().clone()
    stats = s.refine(10, p, opts, extent=1.0, generator=torch.Generator().manual_seed(0))
    assert stats["cloned"] == 1 and stats["split"] == 1 and stats["pruned"] == 1
    # 4 − 1 split + 1 clone + 2 halves − 1 pruned = 5
    assert len(p["means"]) == 5
    assert torch.equal(p["means"][:2].detach(), means_before[[0, 2]])  # kept rows, in order
    assert torch.allclose(torch.exp(p["log_scales"][-2:]).detach(), torch.full((2, 3), 0.5 / 1.6))
    for k, o in opts.items():
        st = o.state[p[k]]
        assert st["exp_avg"].shape == p[k].shape
        assert (st["exp_avg"][2:] == 0).all()  # new rows start with zero moments


def test_adc_accumulates_gradients_in_ndc_units():
    s = ADCStrategy()
    m2 = torch.zeros(3, 2, requires_grad=True)
    m2.grad = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]])
    info = {"means2d": m2, "radii": torch.tensor([3, 0, 5]), "width": 100, "height": 50}
    s.post_backward(1, s.statistics(1, [info]), {"means": m2}, {}, extent=1.0)
    assert s.grad_sum.tolist() == [50.0, 0.0, 50.0] and s.grad_count.tolist() == [1.0, 0.0, 1.0]
    assert torch.allclose(s.max_radii, torch.tensor([0.03, 0.0, 0.05]))
    # two views of a step averaged in the loss (grad_scale 2 undoes it), each seen by one view
    m2.grad = m2.grad / 2
    info2 = {**info, "radii": torch.tensor([0, 4, 0])}
    s.post_backward(2, s.statistics(2, [info, info2], grad_scale=2), {"means": m2}, {}, extent=1.0)
    assert s.grad_sum.tolist() == [100.0, 0.0, 100.0] and s.grad_count.tolist() == [2.0, 1.0, 2.0]
    assert torch.allclose(s.max_radii, torch.tensor([0.03, 0.04, 0.05]))


def test_mcmc_relocates_dead_gaussians_and_grows():
    p = random_params(40, 1)
    with torch.no_grad():
        p["opacity_logits"].data[:] = 1.0
        p["opacity_logits"].data[:10] = -20.0  # dead
    opts = _opts(p)
    s = MCMCStrategy(refine_start=0, refine_every=10, cap_max=41)
    stats = s.post_backward(10, {}, p, opts, extent=1.0, means_lr=0.0, generator=torch.Generator().manual_seed(0))
    assert stats["relocated"] == 10 and len(p["means"]) == 41 and stats["added"] == 1
    assert (torch.sigmoid(p["opacity_logits"]) > s.min_opacity).all()
    # one copy shares the original's opacity: 1 − (1 − o)^(1/2) each
    new_op, new_ls = s._relocation(torch.tensor([0.5]), torch.zeros(1, 3), torch.tensor([1.0]))
    assert torch.allclose(new_op, torch.tensor([0.5])) and torch.allclose(new_ls, torch.zeros(1, 3), atol=1e-6)
    new_op, _ = s._relocation(torch.tensor([0.75]), torch.zeros(1, 3), torch.tensor([2.0]))
    assert torch.allclose(new_op, torch.tensor([0.5]))


@pytest.mark.slow
def test_training_raises_psnr_on_lego(data, tmp_path):
    common = ["--downscale", "8", "--init-points", "5000", "--eval-views", "12", "--video-frames", "0"]
    r0 = run_cli("train", "gaussians", data / "lego", "--max-steps", "0", "--out", tmp_path / "r0", *common)
    assert r0.returncode == 0, r0.stderr[-3000:]
    r1 = run_cli("train", "gaussians", data / "lego", "--max-steps", "300", "--out", tmp_path / "r1", *common)
    assert r1.returncode == 0, r1.stderr[-3000:]
    m0 = json.loads((tmp_path / "r0" / "metrics.json").read_text())
    m1 = json.loads((tmp_path / "r1" / "metrics.json").read_text())
    quality("gaussians 300 steps: PSNR gain dB", m1["test"]["psnr"] - m0["test"]["psnr"], ">", 4)
    for key in ("num_gaussians", "steps", "train_seconds", "peak_mem_mb"):
        assert key in m1
    assert m1["steps"] == 300 and m1["test"]["ssim"] > m0["test"]["ssim"]
    assert (tmp_path / "r1" / "exports" / "point_cloud.ply").is_file()
    assert len(list((tmp_path / "r1" / "renders" / "test").glob("*.png"))) == 12


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["adc", "mcmc"])
def test_resume_after_sigkill_matches_an_uninterrupted_run(data, tmp_path, strategy):
    common = ["--downscale", "8", "--init-points", "3000", "--max-steps", "40", "--checkpoint-every", "10",
              "--refine-start", "5", "--refine-every", "10", "--refine-stop", "40", "--strategy", strategy,
              "--eval-views", "2", "--video-frames", "0"]
    a = run_cli("train", "gaussians", data / "lego", "--out", tmp_path / "a", *common)
    assert a.returncode == 0, a.stderr[-3000:]
    b = run_cli("train", "gaussians", data / "lego", "--out", tmp_path / "b", "--kill-at-step", "27", *common)
    assert b.returncode == -9  # killed like a crash: the last checkpoint is step 20
    assert torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["state"]["loop"]["step"] == 20
    b2 = run_cli("train", "gaussians", data / "lego", "--out", tmp_path / "b", "--resume", *common)
    assert b2.returncode == 0, b2.stderr[-3000:]
    pa = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["state"]["method"]["params"]
    pb = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["state"]["method"]["params"]
    for k in pa:
        assert pa[k].shape == pb[k].shape, k
        assert torch.allclose(pa[k], pb[k], atol=1e-6), k


def test_bad_ply_and_checkpoint_files_are_refused_clearly(tmp_path):
    (tmp_path / "junk.ply").write_bytes(b"not a ply at all")
    r = run_cli("export", tmp_path / "junk.ply", "--format", "splat")
    assert r.returncode == 2 and "junk.ply: not a PLY file" in r.stderr
    G.save_ply(random_params(3, 0), tmp_path / "cut.ply")
    raw = (tmp_path / "cut.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(raw[:-10])
    r = run_cli("export", tmp_path / "cut.ply", "--format", "splat")
    assert r.returncode == 2 and "cut.ply: PLY file is truncated" in r.stderr
    (tmp_path / "pts.ply").write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
                                      "property float z\nend_header\n0 0 0\n")
    r = run_cli("export", tmp_path / "pts.ply")
    assert r.returncode == 2 and "not a Gaussian-splat PLY: missing properties f_dc_0" in r.stderr
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"garbage")
    r = run_cli("export", run)
    assert r.returncode == 2 and "last.pt: not a readable checkpoint" in r.stderr
    # a pickle that would run code on load is refused (weights_only)
    import pickle

    class Evil:
        def __reduce__(self):
            return (exec, ("open('" + str(tmp_path / "pwned") + "', 'w').write('x')",))

    (run / "checkpoints" / "last.pt").write_bytes(pickle.dumps({"params": Evil()}))
    r = run_cli("export", run)
    assert r.returncode == 2 and "not a readable checkpoint" in r.stderr
    assert not (tmp_path / "pwned").exists()
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_video_from_odd_sized_images(data, tmp_path):
    import imageio.v2 as imageio

    r = run_cli("train", "gaussians", data / "lego", "--downscale", "9", "--max-steps", "5", "--init-points", "500",
                "--eval-views", "1", "--video-frames", "4", "--out", tmp_path / "r")  # 89×89 images
    assert r.returncode == 0, r.stderr[-3000:]
    reader = imageio.get_reader(tmp_path / "r" / "renders" / "video.mp4")
    assert reader.count_frames() == 4 and reader.get_data(0).shape == (88, 88, 3)


def test_llff_init_samples_points_inside_the_views_between_near_and_far(data):
    from engine.methods.configs import GaussiansConfig
    from engine.methods.gaussians import GaussianSplatting

    t = GaussianSplatting(GaussiansConfig(data=data / "fern", downscale=16, init_points=3000, max_steps=1,
                                          init="frustum"))
    xyz = t.params["means"].detach().numpy().astype(np.float64)
    near, far = t.scene.near_far.min(), t.scene.near_far.max()
    seen = np.zeros(len(xyz), bool)
    for i in t.train_idx:  # every point lies in front of some view, inside its image, within the bounds
        f = t.scene.frames[i]
        w2c = np.linalg.inv(f.c2w)
        p = xyz @ w2c[:3, :3].T + w2c[:3, 3]
        uv = f.intrinsics.project(p)
        inside = (p[:, 2] > 0.99 * near) & (p[:, 2] < 1.01 * far) & (uv[:, 0] >= -1) & (uv[:, 0] <= f.intrinsics.width + 1) \
            & (uv[:, 1] >= -1) & (uv[:, 1] <= f.intrinsics.height + 1)
        seen |= inside
    assert seen.all()
    # coloured by the pixels they came from: not the grey of an uninformed init
    assert G.sh_dc_to_rgb(t.params["sh_dc"].detach()[:, 0]).std(0).min() > 0.05


def test_llff_starts_from_points_triangulated_with_its_own_poses(data):
    from engine.methods.configs import GaussiansConfig
    from engine.methods.gaussians import GaussianSplatting

    t = GaussianSplatting(GaussiansConfig(data=data / "fern", downscale=8, max_steps=1, init_points=4000))
    info = t.init_info
    assert "triangulated" in info["from"] and info["points"] > 500 and info["mean_reprojection_error_px"] < 1.5
    assert len(t.params["means"]) == 4000  # topped up between the near and far bounds
    xyz = t.params["means"].detach().numpy().astype(np.float64)[:info["points"]]
    # in the dataset's frame: in front of every training view, between LLFF's own depth bounds (which
    # come from COLMAP's points of the full-size photos), and inside most images
    near, far = t.scene.near_far.min(), t.scene.near_far.max()
    for i in t.train_idx:
        f = t.scene.frames[i]
        w2c = np.linalg.inv(f.c2w)
        p = xyz @ w2c[:3, :3].T + w2c[:3, 3]
        assert np.mean((p[:, 2] > 0.9 * near) & (p[:, 2] < 1.1 * far)) > 0.97
        uv = f.intrinsics.project(p)
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < f.intrinsics.width) & (uv[:, 1] >= 0) & (uv[:, 1] < f.intrinsics.height)
        assert inside.mean() > 0.6
    assert G.sh_dc_to_rgb(t.params["sh_dc"].detach()[:info["points"], 0]).std(0).min() > 0.05  # photo colours
    again = GaussianSplatting(GaussiansConfig(data=data / "fern", downscale=8, max_steps=1, init_points=4000))
    assert torch.equal(again.params["means"], t.params["means"])  # deterministic


def test_rgba_scenes_start_inside_the_silhouettes_of_views_they_never_saw(data):
    from scipy.ndimage import binary_dilation

    from engine.methods.configs import GaussiansConfig
    from engine.methods.gaussians import GaussianSplatting

    t = GaussianSplatting(GaussiansConfig(data=data / "lego", downscale=8, init_points=5000, max_steps=1))
    assert "silhouettes" in t.init_info["from"]
    xyz = t.params["means"].detach().numpy().astype(np.float64)
    assert len(xyz) == 5000
    for i in t.test_idx[::40]:  # test views: not used to carve
        f = t.scene.frames[i]
        w2c = np.linalg.inv(f.c2w)
        uv = f.intrinsics.project(xyz @ w2c[:3, :3].T + w2c[:3, 3])
        alpha = t.scene.image_rgba(i)[..., 3] > 0.5
        mask = binary_dilation(alpha, iterations=2)
        px = np.clip(np.floor(uv).astype(int), 0, [alpha.shape[1] - 1, alpha.shape[0] - 1])
        assert mask[px[:, 1], px[:, 0]].mean() > 0.97
    with pytest.raises(Exception, match="alpha"):
        GaussianSplatting(GaussiansConfig(data=data / "fern", downscale=16, init="hull", max_steps=1))


def test_train_refuses_bad_input_in_one_line_without_side_effects(tmp_path, data):
    r = run_cli("train", "gaussians", tmp_path / "nope", "--out", tmp_path / "run")
    assert r.returncode == 2 and "nope: dataset not found" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()
    common = ["--downscale", "16", "--init-points", "200", "--eval-views", "1", "--video-frames", "0",
              "--out", tmp_path / "r"]
    assert run_cli("train", "gaussians", data / "lego", "--max-steps", "2", *common).returncode == 0
    r = run_cli("train", "gaussians", data / "lego", "--max-steps", "4", "--resume", *common)
    assert r.returncode == 2 and "last.pt: checkpoint was made with different training options" in r.stderr
    (tmp_path / "r" / "checkpoints" / "last.pt").write_bytes(b"junk")
    r = run_cli("train", "gaussians", data / "lego", "--max-steps", "2", "--resume", *common)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("lumen3d: error:")]
    assert r.returncode == 2 and len(lines) == 1 and "last.pt: not a readable checkpoint (" in lines[0]
