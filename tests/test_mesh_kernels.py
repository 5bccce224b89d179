"""The mesh kernels against their torch reference, in float64 on fresh random meshes: outputs and
gradients, outputs poisoned first; edge cases (behind the camera, crossing the near plane, degenerate,
sub-pixel and off-screen triangles, 1×1 images, sizes not divisible by the tile, empty meshes), shared
edges covered exactly once, and the same results on 1 and 2 threads."""
import pytest
import torch

from kernels import mesh, mesh_reference as ref


@pytest.fixture(autouse=True)
def poisoned():
    from kernels._build import mesh_cpu_ops

    mesh_cpu_ops().set_poison(True)
    yield
    mesh_cpu_ops().set_poison(False)


def random_mesh(seed, V=40, F=60, B=2, behind=True):
    """Clip-space vertices around the view, some behind the camera (w < 0) so that triangles cross the
    near plane, plus a degenerate, a sub-pixel and an off-screen triangle."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(B, V, 4, generator=g, dtype=torch.float64)
    pos[..., 3] = pos[..., 3].abs() + 0.3
    if behind:
        pos[:, :4, 3] = -pos[:, :4, 3]
    pos[..., 2] = pos[..., 2] * 0.6 * pos[..., 3].abs()
    tri = torch.randint(0, V, (F, 3), generator=g)
    tri[0] = torch.tensor([5, 5, 6])  # degenerate
    pos[:, V - 3:, :] = torch.tensor([0.1, 0.1, 0.0, 1.0], dtype=torch.float64)
    pos[:, V - 2, 0] += 1e-3
    pos[:, V - 1, 1] += 1e-3
    tri[1] = torch.tensor([V - 3, V - 2, V - 1])  # sub-pixel
    pos[:, 7, :2] = 5.0 * pos[:, 7, 3:].abs()
    tri[2] = torch.tensor([7, 8, 9])
    pos[:, 8:10, 0] = 3.0 * pos[:, 8:10, 3].abs()  # right of the frustum: culled
    return pos, tri


def _grads(outs, inputs, g):
    res = torch.autograd.grad(outs, inputs, g, allow_unused=True)
    return [torch.zeros_like(i) if r is None else r for r, i in zip(res, inputs)]


@pytest.mark.parametrize("seed,H,W", [(0, 23, 37), (1, 1, 1), (2, 16, 16), (3, 40, 17)])
def test_rasterize_matches_reference(seed, H, W):
    pos, tri = random_mesh(seed)
    pos.requires_grad_()
    rast, db = mesh.rasterize(pos, tri, (H, W))
    want, want_db = ref.rasterize(pos, tri, H, W)
    assert not torch.isnan(rast).any() and not torch.isnan(db).any()
    assert torch.equal(rast[..., 3], want[..., 3])
    assert torch.allclose(rast, want, atol=1e-12) and torch.allclose(db, want_db, atol=1e-10)
    if H * W > 1:
        assert (rast[..., 3] > 0).double().mean() > 0.2
    g = torch.randn(rast.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    ours, theirs = _grads(rast, [pos], g), _grads(want, [pos], g)
    assert torch.allclose(ours[0], theirs[0], atol=1e-9 * (1 + theirs[0].abs().max()))
    assert (ours[0][..., 2] == 0).all()


def test_near_plane_clips_per_pixel():
    """A triangle from in front of the camera to behind it draws only where −1 ≤ z/w."""
    n, f = 0.1, 10.0
    a, b = (f + n) / (f - n), -2 * f * n / (f - n)

    def clip(x, y, z):  # camera looking down +z, OpenGL-style depth
        return [x, y, a * z + b, z]

    pos = torch.tensor([[clip(-1, -1, 2.0), clip(1, -1, 2.0), clip(0, 1, -1.0)]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2]])
    rast, _ = mesh.rasterize(pos, tri, (32, 32))
    want, _ = ref.rasterize(pos, tri, 32, 32)
    assert torch.equal(rast, want)
    hit = rast[..., 3] > 0
    assert 0 < hit.sum() < 32 * 32 and (rast[..., 2][hit] >= -1).all()


def test_off_screen_and_empty_meshes():
    pos, tri = random_mesh(5)
    pos = pos.clone()
    pos[..., 0] = 4 * pos[..., 3].abs() + 1  # all right of the frustum
    rast, db = mesh.rasterize(pos, tri, (9, 11))
    assert (rast == 0).all() and (db == 0).all()
    empty = torch.zeros(0, 3, dtype=torch.int64)
    rast, _ = mesh.rasterize(pos, empty, (9, 11))
    assert (rast == 0).all()
    out, _ = mesh.interpolate(torch.rand(1, pos.shape[1], 2, dtype=torch.float64), rast, empty)
    assert (out == 0).all()


def grid_mesh(n, width, jitter_seed=None):
    """A planar grid of (n+1)² vertices whose corners sit exactly on pixel centres (edges through
    pixel centres exercise the tie rule), each vertex with its own w (perspective), triangulated with
    alternating diagonals."""
    step = 4
    xs = [(2 * (4 + step * i) + 1) / width - 1 for i in range(n + 1)]
    g = torch.Generator().manual_seed(jitter_seed or 0)
    verts = []
    for j in range(n + 1):
        for i in range(n + 1):
            w = 1.0 + float(torch.rand(1, generator=g)) * (jitter_seed is not None)
            verts.append([xs[i] * w, xs[j] * w, 0.3 * w, w])
    tris = []
    for j in range(n):
        for i in range(n):
            a, b, c, d = j * (n + 1) + i, j * (n + 1) + i + 1, (j + 1) * (n + 1) + i, (j + 1) * (n + 1) + i + 1
            tris += [[a, b, d], [a, d, c]] if (i + j) % 2 else [[a, b, c], [b, d, c]]
    return torch.tensor([verts], dtype=torch.float64), torch.tensor(tris)


@pytest.mark.parametrize("jitter", [None, 7])
def test_shared_edges_cover_each_pixel_exactly_once(jitter):
    W = 48
    pos, tri = grid_mesh(8, W, jitter)
    covered, _ = ref.coverage(pos, tri, W, W)
    count = covered.sum(-1).view(W, W)
    lo, hi = 4, 4 + 4 * 8  # pixel range of the grid (corners on pixel centres, edges included once)
    interior = count[lo + 1:hi, lo + 1:hi]
    assert (interior == 1).all(), "cracks or double coverage inside a closed planar mesh"
    rast, _ = mesh.rasterize(pos, tri, (W, W))
    ids = rast[0, ..., 3]
    assert (ids[lo + 1:hi, lo + 1:hi] > 0).all()
    assert torch.equal(ids, ref.rasterize(pos, tri, W, W)[0][0, ..., 3])


def _raster_inputs(seed, B=2, H=21, W=26):
    pos, tri = random_mesh(seed, B=B)
    rast, db = ref.rasterize(pos, tri, H, W)
    return pos, tri, rast.detach(), db


@pytest.mark.parametrize("shared", [True, False])
def test_interpolate_matches_reference(shared):
    pos, tri, _, _ = _raster_inputs(10)
    pos.requires_grad_()
    rast, db = mesh.rasterize(pos, tri, (21, 26))
    g = torch.Generator().manual_seed(11)
    attr = torch.randn(1 if shared else 2, pos.shape[1], 5, generator=g, dtype=torch.float64).requires_grad_()
    out, da = mesh.interpolate(attr, rast, tri, db)
    want, want_da = ref.interpolate(attr, ref.rasterize(pos, tri, 21, 26)[0], tri, db)
    assert not torch.isnan(out).any() and not torch.isnan(da).any()
    assert torch.allclose(out, want, atol=1e-12) and torch.allclose(da, want_da, atol=1e-10)
    go = torch.randn(out.shape, generator=g, dtype=torch.float64)
    ours, theirs = _grads(out, [attr, pos], go), _grads(want, [attr, pos], go)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-9 * (1 + b.abs().max()))


@pytest.mark.parametrize("filter_mode", ["nearest", "linear", "linear-mipmap-linear"])
@pytest.mark.parametrize("boundary", ["wrap", "clamp"])
@pytest.mark.parametrize("size", [(20, 13), (32, 32)])  # odd sides: the autograd pyramid; else the fused one
def test_texture_matches_reference(filter_mode, boundary, size):
    g = torch.Generator().manual_seed(hash((filter_mode, boundary)) % 1000)
    tex = torch.rand(1, *size, 3, generator=g, dtype=torch.float64).requires_grad_()
    uv = (torch.rand(2, 9, 11, 2, generator=g, dtype=torch.float64) * 3 - 1).requires_grad_()
    uv_da = torch.randn(2, 9, 11, 4, generator=g, dtype=torch.float64) * 0.3
    with torch.no_grad():
        uv[0, 0, 0] = float("nan")
        uv[0, 0, 1] = torch.tensor([0.5, 1.0])  # on a texel edge and the boundary
        uv_da[0, 1] = 0  # magnification: level 0
        uv_da[0, 2] = 100.0  # beyond the coarsest level
    out = mesh.texture(tex, uv, uv_da if filter_mode.endswith("mipmap-linear") else None, filter_mode, boundary)
    mips = mesh.mip_pyramid(tex) if filter_mode == "linear-mipmap-linear" else [tex]
    want = ref.texture(mips, uv, uv_da, filter_mode, boundary)
    assert not torch.isnan(out).any() and (out[0, 0, 0] == 0).all()
    assert torch.allclose(out, want, atol=1e-12)
    go = torch.randn(out.shape, generator=g, dtype=torch.float64)
    ours, theirs = _grads(out, [tex, uv], go), _grads(want, [tex, uv], go)
    assert torch.allclose(ours[0], theirs[0], atol=1e-11)
    assert torch.allclose(ours[1], theirs[1], atol=1e-9)
    if filter_mode == "linear-mipmap-linear":
        assert len(mips) == (5 if size == (20, 13) else 6) and ours[0].abs().sum() > 0


def test_antialias_matches_reference():
    pos, tri, _, _ = _raster_inputs(20, H=30, W=34)
    pos.requires_grad_()
    rast, _ = mesh.rasterize(pos, tri, (30, 34))
    g = torch.Generator().manual_seed(21)
    color = torch.rand(2, 30, 34, 3, generator=g, dtype=torch.float64).requires_grad_()
    out = mesh.antialias(color, rast, pos, tri)
    want = ref.antialias(color, rast, pos, tri, ref.edge_neighbours(tri))
    assert not torch.isnan(out).any()
    assert torch.allclose(out, want, atol=1e-12)
    assert (out - color).abs().max() > 0.05  # it did blend some edges
    go = torch.randn(out.shape, generator=g, dtype=torch.float64)
    ours, theirs = _grads(out, [color, pos], go), _grads(want, [color, pos], go)
    assert torch.allclose(ours[0], theirs[0], atol=1e-12)
    assert torch.allclose(ours[1], theirs[1], atol=1e-9 * (1 + theirs[1].abs().max()))
    assert ours[1].abs().max() > 0


def test_edge_neighbours_of_a_closed_mesh():
    import trimesh

    m = trimesh.creation.icosphere(1)
    nb = ref.edge_neighbours(torch.as_tensor(m.faces))
    assert (nb >= 0).all()
    faces = torch.as_tensor(m.faces)
    for f in range(len(faces)):
        for k in range(3):
            n = int(nb[f, k])
            assert f in nb[n].tolist()  # symmetric
            edge = {int(faces[f, k]), int(faces[f, (k + 1) % 3])}
            assert edge <= set(faces[n].tolist())  # and across that very edge


def test_gradcheck_small_cases():
    g = torch.Generator().manual_seed(30)
    pos = torch.tensor([[[-0.7, -0.6, 0.1, 1.0], [0.8, -0.5, 0.2, 1.3], [0.1, 0.9, -0.1, 0.9]]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2]])
    attr = torch.rand(1, 3, 2, generator=g, dtype=torch.float64)
    tex = torch.rand(1, 6, 5, 2, generator=g, dtype=torch.float64)

    def chain(p, a, t):
        rast, _ = mesh.rasterize(p, tri, (7, 6))
        uv, _ = mesh.interpolate(a, rast, tri)
        return mesh.texture(t, uv, filter_mode="linear")

    assert torch.autograd.gradcheck(chain, (pos.requires_grad_(), attr.requires_grad_(), tex.requires_grad_()))
    # antialias: the crossing moves smoothly with the vertices while no pixel changes triangle
    color = torch.rand(1, 7, 6, 2, generator=g, dtype=torch.float64)
    rast, _ = mesh.rasterize(pos.detach(), tri, (7, 6))
    assert torch.autograd.gradcheck(lambda p, c: mesh.antialias(c, rast, p, tri),
                                    (pos.detach().requires_grad_(), color.requires_grad_()))


def test_one_and_two_threads_agree():
    pos, tri = random_mesh(40, V=300, F=900, B=1, behind=False)
    pos.requires_grad_()
    g = torch.Generator().manual_seed(41)
    attr = torch.rand(1, 300, 2, generator=g, dtype=torch.float64).requires_grad_()
    tex = torch.rand(1, 32, 32, 3, generator=g, dtype=torch.float64).requires_grad_()

    def run():
        rast, db = mesh.rasterize(pos, tri, (70, 90))
        uv, uv_da = mesh.interpolate(attr, rast, tri, db)
        col = mesh.texture(tex, uv, uv_da, "linear-mipmap-linear")
        out = mesh.antialias(col, rast, pos, tri)
        grads = torch.autograd.grad(out, (pos, attr, tex), torch.ones_like(out))
        return [out.detach(), *grads]

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = run()
        torch.set_num_threads(1)
        one = run()
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two):
        assert torch.equal(a, b)


def test_float32_agrees_with_float64():
    pos, tri = random_mesh(50, behind=False)
    r64, _ = mesh.rasterize(pos, tri, (40, 40))
    r32, _ = mesh.rasterize(pos.float(), tri, (40, 40))
    same = r64[..., 3] == r32[..., 3].double()
    assert same.double().mean() > 0.98  # ids differ only on edges
    assert torch.allclose(r32[same].double(), r64[same], atol=1e-4)


def test_backward_ops_check_their_arguments_too():
    """The native backward functions, called directly with faces outside attr or of the wrong type,
    raise instead of reading out of bounds."""
    from kernels._build import mesh_cpu_ops

    pos, tri = random_mesh(61, B=1)
    rast, _ = mesh.rasterize(pos, tri, (8, 8))
    attr = torch.rand(1, pos.shape[1], 2, dtype=torch.float64)
    g = torch.rand(1, 8, 8, 2, dtype=torch.float64)
    ops = mesh_cpu_ops()
    for bad_tri in (tri.int() + 1000, tri.int()[:, :2].contiguous(), tri.long()):
        with pytest.raises(RuntimeError):
            ops.interpolate_bwd(attr, rast, bad_tri, g)
    with pytest.raises(RuntimeError):
        ops.interpolate_bwd(attr, rast, tri.int(), g.float())


@pytest.mark.parametrize("bad", ["tri_range", "pos_shape", "rast_ids", "uv_shape"])
def test_bad_arguments_raise(bad):
    pos, tri = random_mesh(60, B=1)
    rast, db = mesh.rasterize(pos, tri, (8, 8))
    with pytest.raises((RuntimeError, TypeError, ValueError)):
        if bad == "tri_range":
            mesh.rasterize(pos, tri + 1000, (8, 8))
        elif bad == "pos_shape":
            mesh.rasterize(pos[..., :3], tri, (8, 8))
        elif bad == "rast_ids":
            r = rast.clone()
            r[0, 0, 0, 3] = 10_000
            mesh.interpolate(torch.rand(1, pos.shape[1], 2, dtype=torch.float64), r, tri)
        else:
            mesh.texture(torch.rand(4, 4, 3, dtype=torch.float64), torch.rand(1, 8, 8, 3, dtype=torch.float64))
