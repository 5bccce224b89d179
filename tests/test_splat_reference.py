"""The torch reference of the splatting ops is the specification: check it against hand
computations, independent formulas and finite differences."""
import math

import numpy as np
import pytest
import torch

from kernels import splat_reference as ref

F64 = torch.float64


def camera(width, height, focal=40.0, z=3.0):
    V = torch.eye(4, dtype=F64)
    V[2, 3] = z
    K = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=F64)
    return V, K


def random_scene(n, seed, spread=0.5, log_scale=-2.5):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, generator=g, dtype=F64) * spread, torch.randn(n, 4, generator=g, dtype=F64),
            torch.randn(n, 3, generator=g, dtype=F64) * 0.3 + log_scale,
            torch.rand(n, generator=g, dtype=F64) * 0.9 + 0.05, torch.rand(n, 3, generator=g, dtype=F64))


def test_projection_matches_an_independent_ewa_computation():
    means, quats, log_scales, _, _ = random_scene(5, 0, spread=0.2)
    V, K = camera(64, 48)
    V[:3, :3] = ref.quat_to_rotmat(torch.tensor([[0.97, 0.1, -0.2, 0.05]], dtype=F64))[0]
    out = ref.project_gaussians(means, quats, log_scales, V, K, 64, 48)
    for i in range(5):
        R, t = V[:3, :3].numpy(), V[:3, 3].numpy()
        p = R @ means[i].numpy() + t
        q = quats[i].numpy() / np.linalg.norm(quats[i].numpy())
        w, x, y, z = q
        Rg = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                       [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                       [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
        cov = Rg @ np.diag(np.exp(2 * log_scales[i].numpy())) @ Rg.T
        J = np.array([[40 / p[2], 0, -40 * p[0] / p[2] ** 2], [0, 40 / p[2], -40 * p[1] / p[2] ** 2]])
        cov2 = J @ R @ cov @ R.T @ J.T + 0.3 * np.eye(2)
        inv = np.linalg.inv(cov2)
        assert np.allclose(out["conics"][i].numpy(), [inv[0, 0], inv[0, 1], inv[1, 1]])
        assert np.allclose(out["means2d"][i].numpy(), [40 * p[0] / p[2] + 32, 40 * p[1] / p[2] + 24])
        assert out["depths"][i].item() == pytest.approx(p[2])
        assert out["radii"][i].item() == math.ceil(3 * math.sqrt(np.linalg.eigvalsh(cov2).max()))


def test_culling_behind_far_offscreen_and_straddling():
    V, K = camera(32, 32)
    means = torch.tensor([[0, 0, -3.5], [0, 0, 200.0], [30.0, 0, 0], [0.78, 0, 0], [0, 0, 0]], dtype=F64)
    quats = torch.tensor([[1.0, 0, 0, 0]] * 5, dtype=F64)
    log_scales = torch.full((5, 3), -2.0, dtype=F64)
    out = ref.project_gaussians(means, quats, log_scales, V, K, 32, 32, far=100.0)
    radii = out["radii"].tolist()
    assert radii[0] == 0 and radii[1] == 0 and radii[2] == 0  # behind, beyond far, off-screen
    assert radii[3] > 0 and out["means2d"][3, 0] + radii[3] > 32 > out["means2d"][3, 0]  # straddles the border
    assert radii[4] > 0
    assert torch.isfinite(out["conics"]).all() and torch.isfinite(out["means2d"]).all()


def test_antialiased_compensation_is_the_determinant_ratio():
    means, quats, log_scales, _, _ = random_scene(8, 1, spread=0.2, log_scale=-4.0)
    V, K = camera(32, 32)
    plain = ref.project_gaussians(means, quats, log_scales, V, K, 32, 32)
    aa = ref.project_gaussians(means, quats, log_scales, V, K, 32, 32, antialiased=True)
    assert torch.equal(plain["compensation"], torch.ones(8, dtype=F64))
    comp = aa["compensation"]
    assert ((comp > 0) & (comp < 1)).all()
    # det(Σ + εI) = 1 / det(conic); det Σ = det(Σ + εI) − ε·tr(Σ) − ε² with tr(Σ) = tr(Σ + εI) − 2ε
    conic = aa["conics"]
    det_blur = 1 / (conic[:, 0] * conic[:, 2] - conic[:, 1] ** 2)
    trace_blur = (conic[:, 0] + conic[:, 2]) * det_blur
    det_raw = det_blur - 0.3 * (trace_blur - 0.6) - 0.09
    assert torch.allclose(comp, torch.sqrt(det_raw / det_blur))


def test_sh_basis_is_orthonormal_on_the_sphere():
    n = 40000  # Fibonacci sphere: near-uniform quadrature
    k = torch.arange(n, dtype=F64) + 0.5
    z = 1 - 2 * k / n
    phi = math.pi * (1 + 5 ** 0.5) * k
    d = torch.stack([torch.sqrt(1 - z * z) * torch.cos(phi), torch.sqrt(1 - z * z) * torch.sin(phi), z], -1)
    Y = ref.sh_basis(d, 3)
    gram = 4 * math.pi * Y.T @ Y / n
    assert torch.allclose(gram, torch.eye(16, dtype=F64), atol=2e-3)


def test_sh_degree_0_is_a_constant_and_gradients_reach_means():
    g = torch.Generator().manual_seed(2)
    coeffs = torch.randn(6, 16, 3, generator=g, dtype=F64) * 0.3
    means = torch.randn(6, 3, generator=g, dtype=F64)
    campos = torch.tensor([0.1, -0.2, -3.0], dtype=F64)
    assert torch.allclose(ref.sh_to_color(coeffs, means, campos, 0), torch.clamp(ref.SH_C0 * coeffs[:, 0] + 0.5, min=0))
    with pytest.raises(ValueError):
        ref.sh_to_color(coeffs[:, :4], means, campos, 2)
    coeffs.requires_grad_(True)
    means.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c, m: ref.sh_to_color(c, m, campos, 3), (coeffs, means))


def test_one_gaussian_renders_its_analytic_footprint():
    V, K = camera(33, 33)
    s = 0.05  # isotropic: 2D σ = focal·s/z plus the 0.3 px² low-pass
    out = ref.render_gaussians(torch.zeros(1, 3, dtype=F64), torch.tensor([[1.0, 0, 0, 0]], dtype=F64),
                               torch.full((1, 3), math.log(s), dtype=F64), torch.tensor([0.8], dtype=F64),
                               torch.tensor([[1.0, 0.2, 0.0]], dtype=F64), V, K, 33, 33,
                               background=torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    var = (40 * s / 3) ** 2 + 0.3
    for (i, j) in [(16, 16), (16, 18), (13, 17), (16, 22)]:
        dx, dy = j + 0.5 - 16.5, i + 0.5 - 16.5
        a = 0.8 * math.exp(-0.5 * (dx * dx + dy * dy) / var)
        a = a if a >= 1 / 255 else 0.0
        assert out["alpha"][i, j].item() == pytest.approx(a)
        assert out["rgb"][i, j].tolist() == pytest.approx([a, 0.2 * a, 1 - a])
        assert out["depth"][i, j].item() == pytest.approx(3.0 * a)
    assert out["alpha"][0, 0].item() == 0.0 and out["rgb"][0, 0].tolist() == [0.0, 0.0, 1.0]


def test_compositing_clamps_alpha_and_stops_at_the_transmittance_floor():
    # three nearly opaque layers at one pixel: 0.99, then T = 0.01·0.01 = 1e-4 (kept), then stop
    means2d = torch.tensor([[0.5, 0.5]] * 3, dtype=F64)
    conics = torch.tensor([[1.0, 0.0, 1.0]] * 3, dtype=F64)
    colors = torch.eye(3, dtype=F64)
    radii = torch.tensor([3, 3, 3], dtype=torch.int32)
    depths = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    out = ref.rasterize(means2d, conics, colors, torch.ones(3, dtype=F64), depths, radii, 1, 1)
    assert out["rgb"][0, 0].tolist() == pytest.approx([0.99, 0.0099, 0.0])
    assert out["alpha"][0, 0].item() == pytest.approx(1 - 1e-4)
    assert out["depth"][0, 0].item() == pytest.approx(0.99 * 1 + 0.0099 * 2)
    out = ref.rasterize(means2d, conics, colors, torch.ones(3, dtype=F64), depths, radii, 1, 1, torch.ones(3, dtype=F64))
    assert out["rgb"][0, 0].tolist() == pytest.approx([0.9901, 0.01, 1e-4])  # + T·background
    # order comes from depth, not from the input order
    out2 = ref.rasterize(means2d.flip(0), conics, colors.flip(0), torch.ones(3, dtype=F64),
                         torch.tensor([3.0, 2.0, 1.0], dtype=F64), torch.tensor([3, 3, 3], dtype=torch.int32), 1, 1,
                         torch.ones(3, dtype=F64))
    assert torch.allclose(out2["rgb"], out["rgb"])


def test_binning_lists_each_tile_front_to_back():
    means, quats, log_scales, _, _ = random_scene(300, 3, spread=0.8, log_scale=-3.0)
    V, K = camera(70, 45)
    p = ref.project_gaussians(means, quats, log_scales, V, K, 70, 45)
    offsets, ids = ref.bin_gaussians(p["means2d"], p["radii"], p["depths"], 70, 45)
    tiles_x, tiles_y = 5, 3
    assert len(offsets) == tiles_x * tiles_y + 1
    m, r = p["means2d"].numpy(), p["radii"].numpy()
    for ty in range(tiles_y):
        for tx in range(tiles_x):
            k = ty * tiles_x + tx
            got = ids[offsets[k]:offsets[k + 1]].tolist()
            want = [g for g in range(300) if r[g] > 0
                    and m[g, 0] - r[g] < (tx + 1) * 16 and m[g, 0] + r[g] > tx * 16
                    and m[g, 1] - r[g] < (ty + 1) * 16 and m[g, 1] + r[g] > ty * 16]
            assert sorted(got) == sorted(want)
            assert got == sorted(got, key=lambda g: (p["depths"][g].item(), g))


@pytest.mark.parametrize("width,height", [(1, 1), (37, 21), (16, 16)])
def test_edge_sizes_cover_every_pixel(width, height):
    means, quats, log_scales, op, col = random_scene(40, 4, spread=0.3, log_scale=-2.0)
    V, K = camera(width, height, focal=max(width, height) * 1.2)
    out = ref.render_gaussians(means, quats, log_scales, op, col, V, K, width, height)
    assert out["rgb"].shape == (height, width, 3) and torch.isfinite(out["rgb"]).all()
    assert ((out["alpha"] >= 0) & (out["alpha"] <= 1)).all()


def test_empty_zero_opacity_and_degenerate_scenes():
    V, K = camera(20, 12)
    bg = torch.tensor([0.1, 0.2, 0.3], dtype=F64)
    e = torch.zeros(0, 3, dtype=F64)
    out = ref.render_gaussians(e, torch.zeros(0, 4, dtype=F64), e, torch.zeros(0, dtype=F64), e, V, K, 20, 12,
                               background=bg)
    assert torch.allclose(out["rgb"], bg.expand(12, 20, 3)) and (out["alpha"] == 0).all()
    means, quats, log_scales, op, col = random_scene(10, 5, spread=0.3)
    out = ref.render_gaussians(means, quats, log_scales, torch.zeros(10, dtype=F64), col, V, K, 20, 12, background=bg)
    assert torch.allclose(out["rgb"], bg.expand(12, 20, 3))
    tiny = ref.render_gaussians(means, quats, torch.full((10, 3), -30.0, dtype=F64), op, col, V, K, 20, 12)
    huge = ref.render_gaussians(means, quats, torch.full((10, 3), 3.0, dtype=F64), op, col, V, K, 20, 12)
    assert torch.isfinite(tiny["rgb"]).all() and torch.isfinite(huge["rgb"]).all()
    assert (tiny["radii"] > 0).all()  # the low-pass keeps a point a 0.3 px² blob
    assert (huge["alpha"] > 0.5).all()


def test_full_render_gradients_match_finite_differences():
    means, quats, log_scales, op, _ = random_scene(6, 6, spread=0.25, log_scale=-2.2)
    sh = torch.randn(6, 16, 3, generator=torch.Generator().manual_seed(7), dtype=F64) * 0.2
    V, K = camera(20, 12, focal=30.0)
    bg = torch.tensor([0.3, 0.3, 0.3], dtype=F64)
    w = torch.randn(12, 20, 5, generator=torch.Generator().manual_seed(8), dtype=F64)

    def loss(m, q, s, o, c):
        out = ref.render_gaussians(m, q, s, o, c, V, K, 20, 12, sh_degree=3, background=bg, antialiased=True)
        return (torch.cat([out["rgb"], out["alpha"][..., None], out["depth"][..., None]], -1) * w).sum()

    args = tuple(a.clone().requires_grad_(True) for a in (means, quats, log_scales, op, sh))
    assert torch.autograd.gradcheck(loss, args, eps=1e-6, atol=1e-5)
