"""The parts text to 3D adds below the methods, against plain references: the Gaussians' density
lattice and mesh, normals from a density, shading, stratified random views, the field's blob
and coarse-to-fine levels."""
import numpy as np
import torch


def _gaussians(n, seed=0, scale=0.05):
    from scenes import gaussians as G

    g = torch.Generator().manual_seed(seed)
    p = G.from_points(torch.rand(n, 3, generator=g) - 0.5, torch.rand(n, 3, generator=g), 0, 0.5)
    with torch.no_grad():
        p["log_scales"].copy_(torch.log(scale * (0.5 + torch.rand(n, 3, generator=g))))
        p["quats"].copy_(torch.randn(n, 4, generator=g))
        p["opacity_logits"].copy_(torch.randn(n, generator=g))
    return p


def test_density_lattice_matches_the_brute_force_sum():
    from kernels.splat_reference import quat_to_rotmat
    from scenes.gaussian_mesh import density_lattice
    from scenes.gaussians import sh_dc_to_rgb

    p = _gaussians(40)
    R, lo, hi = 24, np.full(3, -0.6), np.full(3, 0.6)
    dens, col = density_lattice(p, lo, hi, R, budget=4096)  # a small budget: many chunks
    k = (np.arange(R) + 0.5) * (hi[0] - lo[0]) / R + lo[0]
    x = torch.from_numpy(np.stack(np.meshgrid(k, k, k, indexing="ij"), -1).reshape(-1, 3))
    mu = p["means"].detach().double()
    rot = quat_to_rotmat(p["quats"].detach().double())
    inv = rot @ torch.diag_embed(torch.exp(-2 * p["log_scales"].detach().double())) @ rot.transpose(1, 2)
    d = x[:, None, :] - mu[None]
    w = torch.sigmoid(p["opacity_logits"].detach().double()) * torch.exp(-0.5 * torch.einsum("mni,nij,mnj->mn", d, inv, d))
    want = w.sum(1).reshape(R, R, R).numpy()
    # beyond three standard deviations each Gaussian is cut off: at most e^{-4.5} of its peak there
    assert np.abs(dens - want).max() < 0.012 * 40 and np.abs(dens - want).mean() < 1e-3
    rgb = (w @ sh_dc_to_rgb(p["sh_dc"].detach().double()[:, 0]).clamp(0, 1)) / w.sum(1, keepdim=True)
    dense = want.reshape(-1) > 0.05
    assert np.abs(col.reshape(-1, 3)[dense] - rgb.numpy()[dense]).max() < 0.02


def test_the_mesh_of_an_opaque_ball_of_gaussians_is_a_sphere():
    from scenes import gaussians as G
    from scenes.gaussian_mesh import gaussians_mesh

    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 3, generator=g)
    x = x / x.norm(dim=1, keepdim=True) * 0.5 * torch.rand(20000, 1, generator=g) ** (1 / 3)
    colour = torch.tensor([0.2, 0.6, 0.9]).expand(20000, 3)
    m = gaussians_mesh(G.from_points(x, colour, 0, 0.9), resolution=64)
    r = np.linalg.norm(m["vertices"], axis=1)
    assert len(m["faces"]) > 1000 and 0.45 < np.median(r) < 0.56 and r.std() < 0.02
    assert np.abs(m["colours"].astype(float) / 255 - [0.2, 0.6, 0.9]).max() < 0.02


def test_normals_from_a_density_and_shading():
    from engine.rendering.shading import density_normals, shade

    density = lambda x: torch.exp(-4 * (x * x).sum(-1))  # noqa: E731  normals point along x
    g = torch.Generator().manual_seed(0)
    unit = torch.randn(100, 3, dtype=torch.float64, generator=g)
    unit = unit / unit.norm(dim=1, keepdim=True)
    # away from the centre, where the density's gradient vanishes and its direction is undefined
    x = unit * (0.2 + 0.6 * torch.rand(100, 1, dtype=torch.float64, generator=g))
    assert torch.allclose(density_normals(density, x, 1e-5), unit, atol=1e-6)
    fwd = density_normals(density, x, 1e-6, density(x))
    assert torch.allclose(fwd, unit, atol=1e-4)
    albedo = torch.rand(100, 3, dtype=torch.float64, generator=g)
    light = -unit  # from behind: only the ambient part remains
    assert torch.allclose(shade(albedo, unit, light, "lambertian", 0.2), 0.2 * albedo)
    assert torch.allclose(shade(albedo, unit, unit, "lambertian", 0.2), albedo)
    assert torch.allclose(shade(albedo, unit, unit, "textureless", 0.2), torch.ones_like(albedo))
    assert shade(albedo, None, None, "albedo") is albedo


def test_stratified_views_surround_the_object():
    from engine.cameras import sample_orbit_cameras

    cams, az, el = sample_orbit_cameras(4, 32, 32, torch.Generator().manual_seed(3), radius=(2.5, 3.0),
                                        elevation_deg=(-10, 45), fov_deg=(40, 70), stratified=True)
    sectors = sorted((az // 90).long().tolist())
    assert sectors == [0, 1, 2, 3]
    eye = cams.c2w[:, :3, 3]
    assert ((eye.norm(dim=1) >= 2.5 - 1e-9) & (eye.norm(dim=1) <= 3.0 + 1e-9)).all()
    assert torch.allclose(torch.rad2deg(torch.atan2(eye[:, 1], eye[:, 0])) % 360, az.double(), atol=1e-4)
    fwd = cams.c2w[:, :3, 2]  # OpenCV: +z looks at the origin
    assert torch.allclose(fwd, -eye / eye.norm(dim=1, keepdim=True), atol=1e-9)


def test_the_fields_blob_and_coarse_to_fine_levels():
    from scenes.nerf import FieldConfig, RadianceField

    f = RadianceField([0, 0, 0], [1, 1, 1], cfg=FieldConfig(log2_table=12, blob_density=10, blob_radius=0.5))
    plain = RadianceField([0, 0, 0], [1, 1, 1], cfg=FieldConfig(log2_table=12))
    plain.load_state_dict(f.state_dict())
    x = torch.tensor([[0.0, 0.0, 0.0], [0.25, 0.0, 0.0], [0.0, 0.9, 0.0]])
    ratio = (f.density(x) / plain.density(x)).detach()
    assert torch.allclose(ratio, torch.exp(torch.tensor([10.0, 5.0, -8.0])), rtol=1e-4)
    f.active_levels = 4
    h = f.features(x)[1]
    with torch.no_grad():  # the finer levels' table entries no longer matter
        f.table[4:] = torch.randn_like(f.table[4:])
    assert torch.equal(h, f.features(x)[1])
    f.active_levels = 16
    assert not torch.equal(h, f.features(x)[1])
