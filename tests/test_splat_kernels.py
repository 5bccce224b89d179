"""Native Gaussian-splatting kernels against their torch reference: float64, fresh random inputs
of several sizes, outputs and gradients, edge cases, outputs poisoned with NaN beforehand."""
import math

import pytest
import torch

from kernels import splat as nat
from kernels import splat_reference as ref
from kernels._build import cpu_ops

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def poisoned_outputs():
    ops = cpu_ops()
    ops.set_poison(True)  # every output starts as NaN (ints as INT_MIN): unwritten elements show
    yield
    ops.set_poison(False)


def scene(n, seed, dtype=F64, spread=0.6, log_scale=-2.5, behind=0.0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * spread
    if behind and n:
        k = max(1, int(n * behind))
        means[:k, 2] = -4.0 - torch.rand(k, generator=g, dtype=dtype)  # behind the camera (z < 0)
    return {"means": means, "quats": torch.randn(n, 4, generator=g, dtype=dtype),
            "log_scales": torch.randn(n, 3, generator=g, dtype=dtype) * 0.4 + log_scale,
            "opacities": torch.rand(n, generator=g, dtype=dtype) * 0.95 + 0.02,
            "sh": torch.randn(n, 16, 3, generator=g, dtype=dtype) * 0.3,
            "colors": torch.rand(n, 4, generator=g, dtype=dtype)}


def camera(width, height, dtype=F64, focal=None, tilt=True):
    V = torch.eye(4, dtype=dtype)
    if tilt:
        V[:3, :3] = ref.quat_to_rotmat(torch.tensor([[0.97, 0.1, -0.2, 0.05]], dtype=dtype))[0]
    V[2, 3] = 3.0
    f = focal or 0.8 * max(width, height)
    K = torch.tensor([[f, 0, width / 2], [0, f * 1.02, height / 2], [0, 0, 1]], dtype=dtype)
    return V, K


def weights(shape, seed, dtype=F64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def assert_close(a, b, what, rtol=1e-9, atol=1e-10):
    if b is None:  # autograd's "does not depend on it"
        b = torch.zeros_like(a)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    assert torch.isfinite(a).all(), f"{what}: native result has NaN/inf (unwritten?)"
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


# ------------------------------------------------------------------------------------ projection
@pytest.mark.parametrize("n", [1, 17, 1000])
@pytest.mark.parametrize("antialiased", [False, True])
def test_projection_and_its_gradients_match_the_reference(n, antialiased):
    s = scene(n, n, spread=1.5, behind=0.1)  # wide spread: culled, off-screen and straddling Gaussians
    V, K = camera(64, 48)
    outs, grads = [], []
    for mod in (ref, nat):
        leaves = [s["means"].clone().requires_grad_(True), s["quats"].clone().requires_grad_(True),
                  s["log_scales"].clone().requires_grad_(True), V.clone().requires_grad_(True)]
        o = mod.project_gaussians(leaves[0], leaves[1], leaves[2], leaves[3], K, 64, 48, antialiased=antialiased)
        live = (o["radii"] > 0).to(F64)  # culled Gaussians' outputs carry no gradient (documented)
        loss = ((o["means2d"] * weights((n, 2), 1)).sum(1) * live).sum() + \
               ((o["conics"] * weights((n, 3), 2)).sum(1) * live).sum() + \
               (o["depths"] * weights(n, 3) * live).sum() + (o["compensation"] * weights(n, 4) * live).sum()
        loss.backward()
        outs.append(o)
        grads.append([x.grad for x in leaves])
    r, t = outs
    assert torch.equal(r["radii"], t["radii"])
    assert 0 < (t["radii"] > 0).sum() < n or n == 1
    for k in ("means2d", "conics", "depths", "compensation"):
        assert_close(t[k], r[k], k)
    for name, a, b in zip(("means", "quats", "log_scales", "viewmat"), grads[1], grads[0]):
        assert_close(a, b, f"d/d{name}", rtol=1e-8, atol=1e-9)


def test_projection_culls_like_the_reference_at_the_edges():
    V, K = camera(32, 32, tilt=False)
    means = torch.tensor([[0, 0, -3.5], [0, 0, 200.0], [30.0, 0, 0], [0.78, 0, 0], [0, 0, -2.995]], dtype=F64)
    quats = torch.tensor([[1.0, 0, 0, 0]] * 5, dtype=F64)
    log_scales = torch.tensor([[-2.0] * 3, [-2.0] * 3, [-2.0] * 3, [-2.0] * 3, [-40.0] * 3], dtype=F64)
    a = ref.project_gaussians(means, quats, log_scales, V, K, 32, 32, far=100.0)
    b = nat.project_gaussians(means, quats, log_scales, V, K, 32, 32, far=100.0)
    assert b["radii"].tolist() == a["radii"].tolist() and b["radii"].tolist()[:3] == [0, 0, 0]


# ------------------------------------------------------------------------------------ SH
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_colour_and_gradients_match_the_reference(degree):
    s = scene(300, 10 + degree)
    campos = torch.tensor([0.3, -0.2, -3.0], dtype=F64)
    res = []
    for mod in (ref, nat):
        c = s["sh"].clone().requires_grad_(True)
        m = s["means"].clone().requires_grad_(True)
        p = campos.clone().requires_grad_(True)
        col = mod.sh_to_color(c, m, p, degree)
        (col * weights(col.shape, 5)).sum().backward()
        res.append((col, c.grad, m.grad, p.grad))
    for name, a, b in zip(("colors", "d/dcoeffs", "d/dmeans", "d/dcampos"), res[1], res[0]):
        assert_close(a, b, name)


# ------------------------------------------------------------------------------------ binning
@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("size", [(1, 1), (37, 21), (70, 45), (160, 96)])
def test_binning_matches_the_reference(dtype, size):
    W, H = size
    s = scene(500, 7, dtype=dtype, spread=1.0, log_scale=-3.0)
    V, K = camera(W, H, dtype=dtype)
    p = ref.project_gaussians(s["means"], s["quats"], s["log_scales"], V, K, W, H)
    offsets, ids = ref.bin_gaussians(p["means2d"], p["radii"], p["depths"], W, H)
    n_off, n_ids, g_off, g_inters = nat.bin_gaussians(p["means2d"], p["radii"], p["depths"], W, H)
    assert torch.equal(n_off, offsets) and torch.equal(n_ids.long(), ids)
    # the inverse map visits every intersection of every Gaussian exactly once
    owner = torch.repeat_interleave(torch.arange(500), g_off[1:] - g_off[:-1])
    assert torch.equal(n_ids.long()[g_inters], owner)
    assert torch.equal(torch.sort(g_inters).values, torch.arange(len(ids)))


# ------------------------------------------------------------------------------------ rasterize
def _raster_inputs(n, W, H, C, seed, log_scale=-2.5):
    s = scene(n, seed, log_scale=log_scale)
    V, K = camera(W, H)
    p = ref.project_gaussians(s["means"], s["quats"], s["log_scales"], V, K, W, H)
    return {"means2d": p["means2d"].detach(), "conics": p["conics"].detach(), "colors": s["colors"][:, :C],
            "opacities": s["opacities"], "depths": p["depths"].detach(), "radii": p["radii"]}


@pytest.mark.parametrize("n,W,H,C", [(0, 20, 12, 3), (1, 1, 1, 3), (50, 37, 21, 3), (400, 70, 45, 3),
                                     (400, 70, 45, 1), (300, 48, 32, 4), (2000, 128, 96, 3)])
def test_rasterize_and_its_gradients_match_the_reference(n, W, H, C):
    x = _raster_inputs(n, W, H, C, seed=n + W)
    bg = torch.linspace(0.1, 0.9, C, dtype=F64)
    res = []
    for mod in (ref, nat):
        leaves = {k: x[k].clone().requires_grad_(True) for k in ("means2d", "conics", "colors", "opacities", "depths")}
        o = mod.rasterize(leaves["means2d"], leaves["conics"], leaves["colors"], leaves["opacities"],
                          leaves["depths"], x["radii"], W, H, bg)
        loss = (o["rgb"] * weights(o["rgb"].shape, 1)).sum() + (o["alpha"] * weights(o["alpha"].shape, 2)).sum() + \
               (o["depth"] * weights(o["depth"].shape, 3)).sum()
        if n:
            loss.backward()
        res.append((o, {k: v.grad for k, v in leaves.items()}))
    (ro, rg), (to, tg) = res
    for k in ("rgb", "alpha", "depth"):
        assert_close(to[k], ro[k], k)
    if n:
        for k in rg:
            assert_close(tg[k], rg[k], f"d/d{k}", rtol=1e-8, atol=1e-9)


def test_saturated_pixels_stop_early_exactly_like_the_reference(monkeypatch):
    # many large opaque Gaussians: transmittance reaches the floor and the rest is skipped
    x = _raster_inputs(600, 48, 40, 3, seed=3, log_scale=-0.8)
    x["opacities"] = torch.full_like(x["opacities"], 0.98)
    leaves = {k: x[k].clone().requires_grad_(True) for k in ("means2d", "conics", "colors", "opacities", "depths")}
    a = ref.rasterize(**leaves, radii=x["radii"], width=48, height=40)
    b = nat.rasterize(**{k: v.detach().clone().requires_grad_(True) for k, v in leaves.items()},
                      radii=x["radii"], width=48, height=40)
    with monkeypatch.context() as m:  # the same scene without the floor is a different image
        m.setattr(ref, "T_MIN", 0.0)
        no_floor = ref.rasterize(**x, width=48, height=40)
    assert (no_floor["rgb"] - a["rgb"]).abs().max() > 1e-5
    for k in ("rgb", "alpha", "depth"):
        assert_close(b[k], a[k], k)
    w = weights(a["rgb"].shape, 7)
    ga = torch.autograd.grad((a["rgb"] * w).sum(), list(leaves.values()))
    nat_leaves = [v.detach().clone().requires_grad_(True) for v in leaves.values()]
    bo = nat.rasterize(*nat_leaves, x["radii"], 48, 40)
    gb = torch.autograd.grad((bo["rgb"] * w).sum(), nat_leaves)
    for name, u, v in zip(leaves, gb, ga):
        assert_close(u, v, f"d/d{name}", rtol=1e-8, atol=1e-9)


def test_absgrad_is_the_sum_of_per_pixel_absolute_gradients():
    W, H = 12, 10
    x = _raster_inputs(30, W, H, 3, seed=11, log_scale=-1.8)
    w = weights((H, W, 3), 4)
    m2 = x["means2d"].clone().requires_grad_(True)
    out = ref.rasterize(m2, x["conics"], x["colors"], x["opacities"], x["depths"], x["radii"], W, H)
    expected = torch.zeros(30, 2, dtype=F64)
    for i in range(H):
        for j in range(W):
            (g,) = torch.autograd.grad((out["rgb"][i, j] * w[i, j]).sum(), m2, retain_graph=True)
            expected += g.abs()
    absgrad = torch.zeros(30, 2, dtype=F64)
    m2n = x["means2d"].clone().requires_grad_(True)
    o = nat.rasterize(m2n, x["conics"], x["colors"], x["opacities"], x["depths"], x["radii"], W, H,
                      absgrad_out=absgrad)
    (o["rgb"] * w).sum().backward()
    assert (expected > 0).any()
    assert_close(absgrad, expected, "absgrad")
    assert (absgrad >= m2n.grad.abs() - 1e-12).all()


# ------------------------------------------------------------------------------------ whole render
@pytest.mark.parametrize("antialiased", [False, True])
def test_full_render_matches_the_reference_including_the_camera_gradient(antialiased):
    s = scene(400, 21)
    V, K = camera(70, 45)
    bg = torch.tensor([0.2, 0.3, 0.4], dtype=F64)
    res = []
    for mod, fn in ((ref, ref.render_gaussians), (nat, nat.rasterize_gaussians)):
        leaves = [s[k].clone().requires_grad_(True) for k in ("means", "quats", "log_scales", "opacities", "sh")]
        Vv = V.clone().requires_grad_(True)
        o = fn(*leaves, Vv, K, 70, 45, sh_degree=3, background=bg, antialiased=antialiased)
        ((o["rgb"] * weights(o["rgb"].shape, 1)).sum() + (o["alpha"] * weights(o["alpha"].shape, 2)).sum()
         + (o["depth"] * weights(o["depth"].shape, 3)).sum()).backward()
        res.append((o, [x.grad for x in leaves] + [Vv.grad]))
    for k in ("rgb", "alpha", "depth"):
        assert_close(res[1][0][k], res[0][0][k], k)
    for name, a, b in zip(("means", "quats", "log_scales", "opacities", "sh", "viewmat"), res[1][1], res[0][1]):
        assert_close(a, b, f"d/d{name}", rtol=1e-8, atol=1e-9)


def test_gradcheck_through_the_native_render():
    s = scene(8, 31, spread=0.3, log_scale=-2.0)
    V, K = camera(20, 12, focal=30.0, tilt=False)
    w = weights((12, 20, 3), 9)

    def f(m, q, ls, o, c):
        return (nat.rasterize_gaussians(m, q, ls, o, c, V, K, 20, 12)["rgb"] * w).sum()

    args = tuple(s[k].clone().requires_grad_(True) for k in ("means", "quats", "log_scales", "opacities"))
    args += (s["colors"][:, :3].clone().requires_grad_(True),)
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-5)


def test_float32_kernels_are_close_to_the_float64_reference():
    s = scene(2000, 41)
    V, K = camera(128, 96)
    a = ref.render_gaussians(s["means"], s["quats"], s["log_scales"], s["opacities"], s["sh"], V, K, 128, 96,
                             sh_degree=3)
    f = {k: v.float() for k, v in s.items()}
    b = nat.rasterize_gaussians(f["means"], f["quats"], f["log_scales"], f["opacities"], f["sh"], V.float(),
                                K.float(), 128, 96, sh_degree=3)
    assert (b["rgb"].double() - a["rgb"]).abs().max() < 2e-4
    assert (b["alpha"].double() - a["alpha"]).abs().max() < 2e-4


def test_results_do_not_depend_on_the_thread_count():
    s = {k: v.float() for k, v in scene(5000, 51, spread=0.8, log_scale=-3.0).items()}
    V, K = camera(200, 150, dtype=torch.float32)
    before = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            leaves = [s[k].clone().requires_grad_(True) for k in ("means", "quats", "log_scales", "opacities", "sh")]
            o = nat.rasterize_gaussians(*leaves, V, K, 200, 150, sh_degree=3, absgrad=True)
            ((o["rgb"] * weights(o["rgb"].shape, 1, torch.float32)).sum() + o["depth"].sum()).backward()
            runs.append([o["rgb"], o["alpha"], o["depth"], o["means2d_absgrad"]] + [x.grad for x in leaves])
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_empty_scene_renders_the_background():
    e = torch.zeros(0, 3, dtype=F64)
    V, K = camera(20, 12)
    out = nat.rasterize_gaussians(e, torch.zeros(0, 4, dtype=F64), e, torch.zeros(0, dtype=F64), e, V, K, 20, 12,
                                  background=torch.tensor([0.1, 0.2, 0.3], dtype=F64))
    assert torch.allclose(out["rgb"], torch.tensor([0.1, 0.2, 0.3], dtype=F64).expand(12, 20, 3))
    assert (out["alpha"] == 0).all() and (out["depth"] == 0).all()


def test_degenerate_huge_and_transparent_gaussians():
    s = scene(50, 61, spread=0.4)
    V, K = camera(40, 30)
    for log_scale, opacity in ((-40.0, 0.9), (4.0, 0.9), (-2.0, 0.0)):
        ls = torch.full_like(s["log_scales"], log_scale)
        op = torch.full_like(s["opacities"], opacity)
        a = ref.render_gaussians(s["means"], s["quats"], ls, op, s["colors"][:, :3], V, K, 40, 30)
        b = nat.rasterize_gaussians(s["means"], s["quats"], ls, op, s["colors"][:, :3], V, K, 40, 30)
        for k in ("rgb", "alpha", "depth"):
            assert_close(b[k], a[k], f"{k} (log scale {log_scale}, opacity {opacity})")


def test_non_cpu_tensors_are_refused_clearly():
    with pytest.raises(NotImplementedError, match="meta"):
        nat.project_gaussians(torch.zeros(1, 3, device="meta"), torch.zeros(1, 4, device="meta"),
                              torch.zeros(1, 3, device="meta"), torch.eye(4), torch.eye(3), 8, 8)
