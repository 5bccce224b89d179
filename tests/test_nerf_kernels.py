"""The NeRF kernels against their torch reference, in float64 on fresh random inputs: outputs and
gradients, outputs poisoned first, edge cases (points outside the grid, dense and hashed levels,
empty rays, zero-length samples, early ray termination)."""
import pytest
import torch

from kernels import nerf, nerf_reference as ref


@pytest.fixture(autouse=True)
def poisoned():
    from kernels._build import nerf_cpu_ops

    nerf_cpu_ops().set_poison(True)
    yield
    nerf_cpu_ops().set_poison(False)


def _table(L, T, F, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(L, T, F, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()


@pytest.mark.parametrize("L,T,F,n_min,n_max", [(4, 2**10, 2, 4, 64), (8, 2**12, 4, 16, 512), (3, 2**6, 1, 2, 3)])
def test_hash_encoding_matches_reference(L, T, F, n_min, n_max):
    g = torch.Generator().manual_seed(L * 100 + T)
    x = torch.rand(300, 3, generator=g, dtype=torch.float64) * 1.2 - 0.1  # some outside [0, 1]³: clamped
    x[0] = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64)  # on the faces of the cube
    x = x.requires_grad_()
    layout = ref.level_layout(L, n_min, n_max, T)
    assert any(d for _, _, d in layout) and (any(not d for _, _, d in layout) or T == 64)
    table = _table(L, T, F, 1)
    out = nerf.hash_encode(x, table, n_min, n_max)
    want = ref.hash_encode(x, table, n_min, n_max)
    assert not torch.isnan(out).any()
    assert torch.allclose(out, want, atol=1e-12)
    g_out = torch.randn(out.shape, generator=g, dtype=torch.float64)
    ours = torch.autograd.grad(out, (x, table), g_out)
    theirs = torch.autograd.grad(want, (x, table), g_out)
    assert torch.allclose(ours[1], theirs[1], atol=1e-12)
    inside = ((x > 0) & (x < 1)).all(1)
    assert torch.allclose(ours[0][inside], theirs[0][inside], atol=1e-10)
    assert torch.all(ours[0][~((x >= 0) & (x <= 1))] == 0)  # clamped: no gradient along that axis
    assert not torch.isnan(ours[0]).any()


def test_hash_encoding_position_gradient_by_finite_differences():
    table = _table(4, 2**8, 2, 3)
    x = torch.rand(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) * 0.8 + 0.1
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda p: nerf.hash_encode(p, table.detach(), 4, 32), (x,))


def test_hash_encoding_float32_and_thread_count_agree():
    table = _table(6, 2**10, 2, 5).detach()
    x = torch.rand(1000, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    out64 = nerf.hash_encode(x, table, 8, 256)
    out32 = nerf.hash_encode(x.float(), table.float(), 8, 256)
    # float32 rounds positions on the finest levels (x·255) — the C++ fuses x·s + 0.5 (FMA), torch does not —
    # so float32 differs from the float32 reference by ~1e-5 and from float64 by ~1e-3
    assert torch.allclose(out32, ref.hash_encode(x.float(), table.float(), 8, 256), atol=5e-5)
    assert torch.allclose(out32.double(), out64, atol=2e-3)
    threads = torch.get_num_threads()
    try:
        t = table.clone().requires_grad_()
        g1 = torch.autograd.grad(nerf.hash_encode(x, t, 8, 256).sum(), t)[0]
        torch.set_num_threads(1)
        g2 = torch.autograd.grad(nerf.hash_encode(x, t, 8, 256).sum(), t)[0]
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(g1, g2)


def _samples(R, seed, max_per_ray=12, sigma_scale=3.0):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, max_per_ray + 1, (R,), generator=g)
    counts[0] = 0  # a ray that missed everything
    ray_indices = torch.repeat_interleave(torch.arange(R), counts)
    M = len(ray_indices)
    dt = torch.rand(M, generator=g, dtype=torch.float64) * 0.2
    dt[::7] = 0.0  # zero-length samples
    t_starts = torch.rand(M, generator=g, dtype=torch.float64)
    sig = (torch.rand(M, generator=g, dtype=torch.float64) * sigma_scale).requires_grad_()
    rgb = torch.rand(M, 3, generator=g, dtype=torch.float64).requires_grad_()
    return sig, rgb, t_starts, t_starts + dt, ray_indices


@pytest.mark.parametrize("sigma_scale,t_min", [(3.0, 1e-4), (80.0, 1e-4), (80.0, 0.0)])
def test_compositing_matches_reference(sigma_scale, t_min):
    R = 200
    sig, rgb, t0, t1, ri = _samples(R, 7, sigma_scale=sigma_scale)
    ours = nerf.composite(sig, rgb, t0, t1, ri, R, t_min)
    want = ref.composite(sig, rgb, t0, t1, ri, R, t_min)
    for a, b in zip(ours, want):
        assert not torch.isnan(a).any() and torch.allclose(a, b, atol=1e-12)
    assert torch.all(ours[1][0] == 0) and torch.all(ours[0][0] == 0)  # the empty ray
    g = torch.Generator().manual_seed(8)
    grads = [torch.randn(o.shape, generator=g, dtype=torch.float64) for o in ours]
    go = torch.autograd.grad(ours, (sig, rgb), grads)
    gw = torch.autograd.grad(want, (sig, rgb), grads)
    for a, b in zip(go, gw):
        assert not torch.isnan(a).any() and torch.allclose(a, b, atol=1e-10)
    if sigma_scale > 10 and t_min > 0:  # dense rays stop early: their last samples get no gradient
        assert (go[0] == 0).sum() > (sig.detach() == 0).sum() + 10


def test_compositing_rejects_unsorted_rays():
    sig, rgb, t0, t1, ri = _samples(10, 9)
    with pytest.raises(ValueError, match="sorted"):
        nerf.composite(sig, rgb, t0, t1, ri.flip(0), 10)


def _rays(R, seed, spread=3.0):
    g = torch.Generator().manual_seed(seed)
    o = (torch.rand(R, 3, generator=g, dtype=torch.float64) * 2 - 1) * spread
    target = (torch.rand(R, 3, generator=g, dtype=torch.float64) * 2 - 1) * 0.5
    d = target - o
    d = d / d.norm(dim=1, keepdim=True)
    d[0] = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)  # axis-parallel
    o[0] = torch.tensor([0.2, -0.3, -5.0], dtype=torch.float64)
    o[1], d[1] = torch.tensor([5.0, 5.0, 5.0], dtype=torch.float64), torch.tensor([1.0, 0, 0], dtype=torch.float64)  # misses
    near = torch.full((R,), 0.05, dtype=torch.float64)
    far = torch.full((R,), 100.0, dtype=torch.float64)
    far[2] = near[2]  # zero-length ray
    return o, d, near, far


@pytest.mark.parametrize("cascades,cone", [(1, 0.0), (3, 0.0), (3, 1 / 64)])
def test_ray_marching_matches_reference(cascades, cone):
    g = torch.Generator().manual_seed(cascades)
    bits = (torch.rand(cascades, 16, 16, 16, generator=g) < 0.3).to(torch.uint8)
    o, d, near, far = _rays(150, 10 + cascades)
    centre, half = [0.1, 0.0, -0.1], [1.0, 0.8, 1.2]
    ri, t0, t1 = nerf.march_rays(o, d, near, far, bits, centre, half, 0.02, 0.2, cone)
    rr, tt = ref.march_rays(o, d, near, far, bits, centre, half, 0.02, 0.2, cone)
    assert len(ri) > 500 and torch.equal(ri, rr)
    assert torch.allclose(t0, tt[:, 0], atol=1e-12) and torch.allclose(t1, tt[:, 1], atol=1e-12)
    assert not (ri == 1).any() and not (ri == 2).any()  # the ray that misses, the zero-length one
    assert torch.all(t1 > t0) and torch.all(t0 >= 0.05 - 1e-12)
    if cone > 0:  # steps grow with distance
        steps = t1 - t0
        assert steps.max() > 2 * steps.min()


def test_ray_marching_empty_and_full_grids():
    o, d, near, far = _rays(50, 3)
    centre, half = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    empty = torch.zeros(2, 8, 8, 8, dtype=torch.uint8)
    ri, _, _ = nerf.march_rays(o, d, near, far, empty, centre, half, 0.01)
    assert len(ri) == 0
    full = torch.ones(1, 8, 8, 8, dtype=torch.uint8)
    ri, t0, t1 = nerf.march_rays(o, d, near, far, full, centre, half, 0.01)
    # every step inside the box is a sample: a ray's samples tile its chord of the box
    chord = torch.zeros(50, dtype=torch.float64).index_add(0, ri, t1 - t0)
    lo = torch.maximum((-1 - o) / d, (1 - o) / d).min(1).values  # exit
    hi = torch.minimum((-1 - o) / d, (1 - o) / d).max(1).values  # entry
    length = (lo - hi.clamp_min(0.05)).clamp_min(0)
    length[2] = 0
    hit = torch.isfinite(length) & (length > 0)
    assert torch.allclose(chord[hit], length[hit], atol=0.011)
