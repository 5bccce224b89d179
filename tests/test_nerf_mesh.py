"""Mesh extraction from a density field: marching cubes on analytic fields whose surface is known."""
import numpy as np
import pytest
import torch

from scenes.nerf_mesh import sample_density, surface, vertex_colours, vertex_normals


def ball(centre, radius, peak=100.0):
    c = torch.tensor(centre, dtype=torch.float32)
    return lambda x: peak * torch.sigmoid((radius - (x - c).norm(dim=-1)) * 80)


def test_a_ball_becomes_a_closed_sphere_with_outward_normals_and_its_colours():
    import trimesh

    lo, hi = np.full(3, -1.0), np.full(3, 1.0)
    density = ball([0.1, -0.2, 0.05], 0.5)
    vol = sample_density(density, lo, hi, 64)
    verts, faces = surface(vol, lo, hi, threshold=50.0)  # the sigmoid's midpoint: the radius itself
    r = np.linalg.norm(verts - [0.1, -0.2, 0.05], axis=1)
    assert len(faces) > 1000
    assert np.abs(r - 0.5).max() < 2 / 64  # within a cell of the true surface
    mesh = trimesh.Trimesh(verts, faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert abs(mesh.volume - 4 / 3 * np.pi * 0.5 ** 3) / (4 / 3 * np.pi * 0.5 ** 3) < 0.03  # positive: wound outward
    normals = vertex_normals(verts, faces)
    radial = (verts - [0.1, -0.2, 0.05]) / r[:, None]
    assert (normals * radial).sum(1).min() > 0.9
    # colour seen along the inward normal: a field that shows red from +x, blue from -x
    rgb = vertex_colours(lambda x, d: torch.stack([(d[:, 0] < 0).float(), torch.zeros(len(d)),
                                                   (d[:, 0] >= 0).float()], 1), verts, normals)
    side = radial[:, 0]
    assert (rgb[side > 0.2, 0] == 1).all() and (rgb[side < -0.2, 2] == 1).all()


def test_floaters_are_dropped_and_a_surface_cut_by_the_box_is_closed():
    import trimesh

    lo, hi = np.full(3, -1.0), np.full(3, 1.0)
    big, speck = ball([0.0, 0.0, 0.9], 0.6), ball([-0.6, -0.6, -0.6], 0.04)
    vol = sample_density(lambda x: big(x) + speck(x), lo, hi, 64)
    kept, _ = surface(vol, lo, hi, 50.0, min_component=0.0)
    verts, faces = surface(vol, lo, hi, 50.0)
    near_speck = np.linalg.norm(kept - [-0.6, -0.6, -0.6], axis=1) < 0.1
    assert near_speck.any()  # the speck is there without the filter...
    assert not (np.linalg.norm(verts - [-0.6, -0.6, -0.6], axis=1) < 0.1).any()  # ...and gone with it
    mesh = trimesh.Trimesh(verts, faces, process=False)
    assert mesh.is_watertight  # the ball pokes out of the top face: the cut is capped
    assert verts[:, 2].max() <= 1.0 + 1e-9 and verts[:, 2].max() > 1 - 1 / 64


def test_empty_and_occupancy_masked_fields():
    lo, hi = np.full(3, -1.0), np.full(3, 1.0)
    verts, faces = surface(np.zeros((16, 16, 16), np.float32), lo, hi, 1.0)
    assert verts.shape == (0, 3) and faces.shape == (0, 3)
    density = ball([0.0, 0.0, 0.0], 0.5)
    calls = []

    def counted(x):
        calls.append(len(x))
        return density(x)

    vol = sample_density(counted, lo, hi, 32, occupied=lambda x: x[:, 0] > 0)
    assert sum(calls) == 32 ** 3 // 2  # only occupied points are evaluated
    assert (vol[:16] == 0).all() and vol[16:].max() > 50


@pytest.mark.parametrize("res", [17, 32])
def test_lattice_points_are_cell_centres(res):
    from scenes.nerf_mesh import lattice

    axes, spacing = lattice(np.array([-1.0, 0.0, 2.0]), np.array([1.0, 1.0, 3.0]), res)
    assert np.allclose(axes[:, 0], [-1 + spacing[0] / 2, spacing[1] / 2, 2 + spacing[2] / 2])
    assert np.allclose(axes[:, -1], [1 - spacing[0] / 2, 1 - spacing[1] / 2, 3 - spacing[2] / 2])
