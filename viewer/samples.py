"""Small results of every kind with known content, for the viewer's tests and the docs'
screenshots: Gaussians of known colours at known places, a textured mesh, a vertex-coloured
mesh, and an animated stick-figure body sequence with its photos and 2D keypoints."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scenes.body_sequence import BodySequence

SPLAT_COLOURS = np.array([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.15, 0.25, 0.95], [0.95, 0.85, 0.1]])
SPLAT_CENTRES = np.array([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]])


def known_gaussians(sh_degree: int = 1, scale: float = 0.35, opacity: float = 0.99) -> dict[str, torch.Tensor]:
    """Four round, nearly opaque Gaussians: red, green, blue and yellow at the corners of a
    2×2 square in the z = 0 plane (SH beyond the DC term zero, so colours are view-independent)."""
    from scenes.gaussians import rgb_to_sh_dc

    n = len(SPLAT_CENTRES)
    K = (sh_degree + 1) ** 2
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    return {"means": torch.tensor(SPLAT_CENTRES, dtype=torch.float32),
            "log_scales": torch.full((n, 3), float(np.log(scale))), "quats": quats,
            "opacity_logits": torch.full((n,), float(np.log(opacity / (1 - opacity)))),
            "sh_dc": rgb_to_sh_dc(torch.tensor(SPLAT_COLOURS, dtype=torch.float32))[:, None, :],
            "sh_rest": torch.zeros(n, K - 1, 3)}


def write_meshes(folder: Path) -> dict[str, Path]:
    """A textured box (OBJ + MTL + PNG, and GLB) and a vertex-coloured sphere (PLY)."""
    import open3d as o3d

    folder.mkdir(parents=True, exist_ok=True)
    box = o3d.geometry.TriangleMesh.create_box(1.0, 1.0, 1.0, create_uv_map=True, map_texture_to_each_face=True)
    box.translate([-0.5, -0.5, 0.0])
    box.compute_vertex_normals()
    tex = np.zeros((256, 256, 3), np.uint8)
    cells = (np.arange(256)[:, None] // 32 + np.arange(256)[None] // 32) % 2
    tex[...] = np.where(cells[..., None] == 1, [230, 120, 30], [30, 90, 200])
    box.textures = [o3d.geometry.Image(tex)]
    box.triangle_material_ids = o3d.utility.IntVector([0] * len(box.triangles))
    paths = {"obj": folder / "box.obj", "glb": folder / "box.glb", "ply": folder / "sphere.ply"}
    o3d.io.write_triangle_mesh(str(paths["obj"]), box, print_progress=False)
    _write_glb(box, tex, paths["glb"])
    sphere = o3d.geometry.TriangleMesh.create_sphere(0.5, resolution=30)
    sphere.translate([1.5, 0.0, 0.5])
    v = np.asarray(sphere.vertices)
    sphere.vertex_colors = o3d.utility.Vector3dVector(np.clip((v - v.min(0)) / np.ptp(v, 0), 0, 1))
    sphere.compute_vertex_normals()
    o3d.io.write_triangle_mesh(str(paths["ply"]), sphere)
    return paths


def _write_glb(mesh, tex: np.ndarray, path: Path) -> None:
    """A PBR-textured GLB (Open3D 0.20 writes broken GLBs; trimesh writes good ones)."""
    import trimesh
    from PIL import Image

    tris = np.asarray(mesh.triangles)
    verts = np.asarray(mesh.vertices)[tris.ravel()]  # one vertex per corner: UVs are per corner
    uv = np.asarray(mesh.triangle_uvs).copy()
    uv[:, 1] = 1.0 - uv[:, 1]
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(tex), metallicFactor=0.0,
                                                   roughnessFactor=0.8)
    tm = trimesh.Trimesh(verts, np.arange(len(verts)).reshape(-1, 3), process=False,
                         visual=trimesh.visual.TextureVisuals(uv=uv, material=material))
    path.write_bytes(tm.export(file_type="glb"))


# ------------------------------------------------------------------------ stick-figure sequence
# COCO-17 joint positions (metres, y down, in the body's frame) of a standing figure
_REST = np.array([[0, -1.62, 0], [-0.03, -1.66, 0], [0.03, -1.66, 0], [-0.08, -1.63, 0.05], [0.08, -1.63, 0.05],
                  [-0.2, -1.4, 0], [0.2, -1.4, 0], [-0.25, -1.12, 0], [0.25, -1.12, 0], [-0.28, -0.86, 0],
                  [0.28, -0.86, 0], [-0.12, -0.9, 0], [0.12, -0.9, 0], [-0.13, -0.48, 0], [0.13, -0.48, 0],
                  [-0.13, -0.05, 0], [0.13, -0.05, 0]], np.float64)
_BONES = [(5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6), (11, 12), (5, 11),
          (6, 12), (0, 5), (0, 6)]


def stick_figure_joints(t: float) -> np.ndarray:
    """(17, 3) joints of a figure walking on the spot: arms and legs swing with phase t."""
    j = _REST.copy()
    swing = 0.45 * np.sin(2 * np.pi * t)
    for (hip, knee, ankle), s in (((11, 13, 15), swing), ((12, 14, 16), -swing)):
        for k in (knee, ankle):
            d = j[k] - j[hip]
            j[k] = j[hip] + [d[0], d[1] * np.cos(s) - d[2] * np.sin(s), d[1] * np.sin(s) + d[2] * np.cos(s)]
    for (sh, el, wr), s in (((5, 7, 9), -swing), ((6, 8, 10), swing)):
        for k in (el, wr):
            d = j[k] - j[sh]
            j[k] = j[sh] + [d[0], d[1] * np.cos(s) - d[2] * np.sin(s), d[1] * np.sin(s) + d[2] * np.cos(s)]
    return j


def _limb(a: np.ndarray, b: np.ndarray, radius: float):
    import open3d as o3d

    length = max(float(np.linalg.norm(b - a)), 1e-6)
    cyl = o3d.geometry.TriangleMesh.create_cylinder(radius, length, resolution=12, split=1)
    z = (b - a) / length
    x = np.cross(z, [0, 0, 1.0] if abs(z[2]) < 0.9 else [1.0, 0, 0])
    x /= np.linalg.norm(x)
    R = np.stack([x, np.cross(z, x), z], 1)
    cyl.rotate(R, center=[0, 0, 0])
    cyl.translate((a + b) / 2)
    return cyl


def stick_figure_mesh(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and faces of cylinders along the bones and a sphere for the head; the same
    topology for every pose, as a body model's meshes have."""
    import open3d as o3d

    mesh = o3d.geometry.TriangleMesh()
    for a, b in _BONES:
        mesh += _limb(joints[a], joints[b], 0.05)
    head = o3d.geometry.TriangleMesh.create_sphere(0.11, resolution=12)
    head.translate(joints[0] + [0, -0.02, 0])
    mesh += head
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.triangles, np.int32)


def write_stick_figure_sequence(folder: Path, frames: int = 8, width: int = 320, height: int = 240,
                                fps: float = 8.0) -> Path:
    """A walking figure 4 m in front of a camera (the sequence's frame is the camera's: OpenCV
    axes, c2w = I), its photos (a plain gradient with the frame number) and its keypoints."""
    from PIL import Image, ImageDraw

    from scenes.body_sequence import save_sequence

    folder.mkdir(parents=True, exist_ok=True)
    f = 1.1 * height
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    verts, kps, paths = [], [], []
    for t in range(frames):
        joints = stick_figure_joints(t / frames) + [0.0, 0.85, 4.0]
        v, faces = stick_figure_mesh(joints)
        verts.append(v)
        uv = joints @ K.T
        kps.append(np.concatenate([uv[:, :2] / uv[:, 2:], np.ones((17, 1))], 1))
        img = np.zeros((height, width, 3), np.uint8)
        img[...] = np.linspace(60, 200, height, dtype=np.uint8)[:, None, None]
        pil = Image.fromarray(img)
        ImageDraw.Draw(pil).text((8, 8), f"frame {t}", fill=(255, 255, 255))
        paths.append(folder / f"frame_{t:04d}.png")
        pil.save(paths[-1])
    path = folder / "sequence.npz"
    save_sequence(BodySequence(np.stack(verts), faces, fps, np.stack(kps).astype(np.float32), None, K, width,
                               height, np.eye(4), paths), path)
    return path
