"""The mesh renderer as users meet it: an independent renderer (Open3D) draws the same picture, a
texture and a displaced silhouette are recovered by optimisation through it, textured meshes survive
OBJ+MTL and GLB round trips, xatlas UVs do not overlap, baking reproduces what it baked, and the PBR
shading gives known answers (white furnace, a Lambertian plane under a point light)."""
import math

import numpy as np
import pytest
import torch

from engine.cameras import Cameras
from engine.data.cameras import Intrinsics, look_at
from engine.rendering import pbr
from engine.rendering.mesh import MeshRenderer, bake_renders, bake_vertex_colors
from scenes.mesh_files import read_textured_mesh, write_glb, write_obj
from scenes.textured_mesh import Material, TexturedMesh, unwrap, uv_overlap
from tests.conftest import DATA, quality

MESHES = DATA / "meshes"


def around(mesh, n, width, height, seed=0, dist=2.6, focal=None):
    """n cameras on a sphere around the mesh, looking at its centre."""
    c = mesh.vertices.mean(0).double().numpy()
    r = float((mesh.vertices.double() - torch.as_tensor(c)).norm(dim=1).max())
    g = np.random.default_rng(seed)
    c2ws = []
    for _ in range(n):
        d = g.normal(size=3)
        d /= np.linalg.norm(d)
        up = (0, 0, 1) if abs(d[2]) < 0.9 else (0, 1, 0)
        c2ws.append(look_at(c + dist * r * d, c, up))
    f = focal or 0.9 * width
    return Cameras.from_c2w(np.stack(c2ws), Intrinsics(width, height, f, f, width / 2, height / 2))


def psnr(a, b, mask):
    mse = ((a - b) ** 2 * mask).sum() / (mask.sum() * a.shape[-1]).clamp_min(1)
    return float(-10 * torch.log10(mse))


def _open3d_render(mesh, c2w, K, W, H, texture_u8):
    import open3d as o3d
    from open3d.visualization import rendering

    from viewer.framing import View
    from viewer.offscreen import Drawable, OffscreenView

    g = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(mesh.vertices.double().numpy()),
                                  o3d.utility.Vector3iVector(mesh.faces.int().numpy()))
    uv = mesh.uvs[mesh.faces.reshape(-1)].double().numpy()
    uv[:, 1] = 1 - uv[:, 1]  # OpenGL's v points up the image
    g.triangle_uvs = o3d.utility.Vector2dVector(uv)
    g.triangle_material_ids = o3d.utility.IntVector([0] * len(mesh.faces))
    mat = rendering.MaterialRecord()
    mat.shader = "defaultUnlit"
    mat.albedo_img = o3d.geometry.Image(np.ascontiguousarray(texture_u8))
    with OffscreenView(W, H, lit=False) as v:
        v.add([Drawable("m", g, mat)])
        return v.render(View(K, c2w, W, H)).astype(np.float64)


def test_open3d_draws_the_same_textured_mesh():
    """fuze.obj, unlit, from the same camera by Filament and by us. Filament scales unlit colours
    by its camera exposure, so its transfer curve is measured first on a ramp of flat textures drawn
    the same way, and our values go through it; then the two images agree within a few /255 away from
    the silhouette, and the silhouettes themselves agree."""
    from scipy.ndimage import binary_erosion

    mesh = read_textured_mesh(MESHES / "fuze.obj")
    W, H = 200, 240
    K = np.array([[260.0, 0, W / 2], [0, 260.0, H / 2], [0, 0, 1]])
    c = mesh.vertices.mean(0).double().numpy()
    c2w = look_at(c + np.array([0.18, 0.15, 0.21]), c, (0, 0, 1))
    tex = (mesh.parts[0].material.base_color.numpy() * 255).round().astype(np.uint8)
    theirs = _open3d_render(mesh, c2w, K, W, H, tex)
    ours_out = MeshRenderer(mesh).render(Cameras.from_c2w(c2w, Intrinsics(W, H, 260.0, 260.0, W / 2, H / 2)), "unlit")
    ours = (ours_out.rgb[0].clamp(0, 1).numpy() * 255).round()
    # Filament's unlit transfer: 16 grey levels, each a flat texture on the same mesh
    levels = np.linspace(0, 255, 16).round()
    hit = ours_out.rast[0, ..., 3].numpy() > 0
    inner = binary_erosion(hit, iterations=3)
    curve = [float(np.median(_open3d_render(mesh, c2w, K, W, H, np.full((4, 4, 3), lv, np.uint8))[inner]))
             for lv in levels]
    assert curve[-1] < 255 and np.all(np.diff(curve) > 0)
    mapped = np.interp(ours, levels, curve)
    diff = np.abs(mapped - theirs)[inner]
    quality("mesh: |ours - Open3D| mean /255 inside the silhouette", diff.mean(), "<", 4.0)
    assert np.median(diff) < 3.0
    drawn = np.abs(theirs - 255).max(-1) > 3
    assert (drawn == hit).mean() > 0.995  # the same silhouette


def test_a_blank_texture_fitted_to_20_views_recovers_the_texture():
    """From a grey texture, baking 20 unlit renders of fuze.obj (gradient descent through the renderer):
    held-out views reach ≥ 35 dB."""
    torch.manual_seed(0)
    mesh = read_textured_mesh(MESHES / "fuze.obj")
    truth = torch.nn.functional.interpolate(mesh.parts[0].material.base_color.permute(2, 0, 1)[None], size=(256, 256),
                                            mode="area")[0].permute(1, 2, 0)
    mesh = mesh.with_material(Material(base_color=truth))
    renderer = MeshRenderer(mesh)
    train, held = around(mesh, 20, 96, 96, seed=1), around(mesh, 4, 96, 96, seed=2)
    with torch.no_grad():
        target = renderer.render(train, "unlit", antialias=False).rgb
        want = renderer.render(held, "unlit", antialias=False)
    steps = []
    tex = bake_renders(renderer, train, target, size=256, steps=100, lr=0.05, progress=lambda k, loss: steps.append(loss))
    assert len(steps) == 100 and steps[-1] < 0.01 * steps[0]
    with torch.no_grad():
        got = renderer.render(held, "unlit", maps={"base_color": tex}, antialias=False)
    score = psnr(got.rgb, want.rgb, want.alpha)
    start = psnr(torch.full_like(want.rgb, 0.5), want.rgb, want.alpha)
    assert start < 20, start
    quality("mesh: texture baked from 20 views, held-out PSNR dB", score, ">", 35.0)


def test_antialias_moves_a_displaced_silhouette_back():
    """A sphere shifted off its place, its silhouettes compared in 6 views: only antialiasing gives
    the positions a gradient, and it brings the sphere back."""
    import trimesh

    s = trimesh.creation.icosphere(3, radius=0.5)
    mesh = TexturedMesh(torch.tensor(s.vertices, dtype=torch.float32), torch.tensor(s.faces))
    renderer = MeshRenderer(mesh)
    cams = around(mesh, 6, 64, 64, seed=3, dist=3.0)
    with torch.no_grad():
        target = renderer.render(cams, "unlit", background=torch.zeros(3)).alpha
    shift = torch.tensor([0.12, -0.08, 0.06], requires_grad=True)
    out = renderer.render(cams, "unlit", antialias=False, vertices=mesh.vertices + shift)
    assert not out.alpha.requires_grad  # coverage alone is a step function
    opt = torch.optim.Adam([shift], lr=0.01)
    for _ in range(80):
        out = renderer.render(cams, "unlit", vertices=mesh.vertices + shift)
        loss = ((out.alpha - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    quality("mesh: silhouette fit, shift left of 0.16", float(shift.detach().norm()), "<", 0.02)


@pytest.mark.parametrize("name", ["CesiumMilkTruck.glb", "fuze.obj", "BoxTextured.glb"])
def test_obj_and_glb_round_trips_render_identically(name, tmp_path):
    mesh = read_textured_mesh(MESHES / name)
    cams = around(mesh, 2, 96, 80, seed=4)
    want = MeshRenderer(mesh).render(cams, "pbr", environment=pbr.Environment.from_radiance(pbr.sky())).rgb
    for kind in ("obj", "glb"):
        path = tmp_path / kind / f"mesh.{kind}"
        write_obj(mesh, path) if kind == "obj" else write_glb(mesh, path)
        back = read_textured_mesh(path)
        assert len(back.faces) == len(mesh.faces) and len(back.parts) == len(mesh.parts)
        key = lambda p: (p.material.name.rstrip("_0123456789"), p.count)  # noqa: E731  (GLB nodes may reorder)
        for a, b in zip(sorted(mesh.parts, key=key), sorted(back.parts, key=key)):
            for key in ("base_color", "orm", "normal"):
                x, y = getattr(a.material, key), getattr(b.material, key)
                assert (x is None) == (y is None), (kind, key)
                if x is not None:
                    assert (x - y).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit files: exact for 8-bit maps
            assert np.allclose(a.material.base_color_factor, b.material.base_color_factor, atol=1e-3)
        got = MeshRenderer(back).render(cams, "pbr", environment=pbr.Environment.from_radiance(pbr.sky())).rgb
        # reordered faces can only change which of two coplanar triangles wins a pixel
        assert ((got - want).abs().amax(-1) > 2 / 255).double().mean() < 0.002, kind
    assert not list(tmp_path.rglob(".partial-*"))


def test_xatlas_uvs_cover_without_overlap_and_vertex_colours_bake():
    import trimesh

    s = trimesh.creation.icosphere(3)
    col = torch.tensor(s.vertices, dtype=torch.float32) * 0.5 + 0.5
    mesh = unwrap(TexturedMesh(torch.tensor(s.vertices, dtype=torch.float32), torch.tensor(s.faces), colors=col))
    assert mesh.uvs is not None and len(mesh.faces) == len(s.faces)
    covered, twice = uv_overlap(mesh, 512)
    assert covered > 0.4 and twice < 0.002, (covered, twice)
    tex = bake_vertex_colors(mesh, 512)
    baked = TexturedMesh(mesh.vertices, mesh.faces, mesh.uvs, parts=[])
    baked = baked.with_material(Material(base_color=tex))
    cams = around(mesh, 3, 96, 96, seed=5)
    a = MeshRenderer(mesh).render(cams, "unlit", antialias=False)
    b = MeshRenderer(baked).render(cams, "unlit", antialias=False)
    # texel filtering and mips at chart seams keep it below exact
    quality("mesh: vertex colours baked into xatlas UVs, PSNR dB", psnr(b.rgb, a.rgb, a.alpha), ">", 35)


def test_pbr_known_answers(tmp_path):
    from engine.data.hdr import read_environment, write_hdr

    # a constant environment L: irradiance π·L everywhere, and a white rough dielectric reflects ≈ L
    write_hdr(tmp_path / "grey.hdr", np.full((32, 64, 3), 0.5))
    env = pbr.Environment.from_radiance(torch.from_numpy(read_environment(tmp_path / "grey.hdr")))
    n = torch.nn.functional.normalize(torch.randn(200, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    assert torch.allclose(env.irradiance(n), torch.full((200, 3), math.pi * 0.5), rtol=0.01)
    col = env.shade(torch.ones(200, 3), torch.ones(200, 1), torch.zeros(200, 1), torch.ones(200, 1), n, n)
    assert torch.allclose(col, torch.full_like(col, 0.5), atol=0.03)
    lut = pbr.brdf_lut()
    assert torch.allclose(lut[0, -1], torch.tensor([1.0, 0.0]), atol=0.02)  # a mirror seen head-on reflects F0
    # a Lambertian square facing a point light straight above its centre: radiance ρ/π · I/d²
    quad = TexturedMesh(torch.tensor([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0.0]]), torch.tensor([[0, 1, 2], [0, 2, 3]]),
                        colors=torch.full((4, 3), 0.8))
    cam = Cameras.from_c2w(look_at(np.array([0, 0, 3.0]), np.zeros(3), (0, 1, 0)), Intrinsics(33, 33, 40, 40, 16.5, 16.5))
    light = (torch.tensor([0, 0, 2.0]), torch.full((3,), 4.0))
    out = MeshRenderer(quad).render(cam, "lambert", lights=[light], antialias=False)
    want = pbr.srgb_to_linear(torch.tensor(0.8)) / math.pi * 4.0 / 4.0
    got = pbr.srgb_to_linear(out.rgb[0, 16, 16, 0])
    assert abs(float(got) - float(want)) < 0.005, (float(got), float(want))
    # a flat normal map changes nothing
    uvq = TexturedMesh(quad.vertices, quad.faces, torch.tensor([[0, 1], [1, 1], [1, 0], [0, 0.0]]))
    flat = uvq.with_material(Material(base_color=torch.full((4, 4, 3), 0.8), normal=torch.tensor([0.5, 0.5, 1.0]).expand(4, 4, 3)))
    plain = uvq.with_material(Material(base_color=torch.full((4, 4, 3), 0.8)))
    a = MeshRenderer(flat).render(cam, "pbr", lights=[light], antialias=False).rgb
    b = MeshRenderer(plain).render(cam, "pbr", lights=[light], antialias=False).rgb
    assert (a - b).abs().max() < 2e-3


def test_bad_mesh_files_are_one_line(tmp_path):
    from engine.errors import InputError

    (tmp_path / "bad.glb").write_bytes(b"glTF\x02\x00\x00\x00garbage")
    (tmp_path / "empty.obj").write_text("# nothing\n")
    for path, words in ((tmp_path / "bad.glb", "not a readable mesh"), (tmp_path / "empty.obj", "no triangles"),
                        (tmp_path / "missing.obj", "no such mesh file"), (tmp_path / "x.fbx", "cannot read")):
        if path.suffix == ".fbx":
            path.write_text("x")
        with pytest.raises(InputError, match=words):
            read_textured_mesh(path)
