"""Built-in data: a procedural, textured scene photographed by Open3D's offscreen renderer.

No dataset can be downloaded, so the engine makes its own photos. The textures are
multi-scale noise with crisp shapes on top, which gives SIFT plenty to match, and the
unlit shading keeps colours view-independent. The true cameras are written beside the
photos as a nerfstudio transforms.json, so every later stage can be checked against them.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from engine.data.cameras import Intrinsics, look_at
from engine.data.nerfstudio import write_nerfstudio
from engine.data.dataset import Frame
from viewer.framing import View
from viewer.offscreen import Colours, Drawable, OffscreenView, save_png

log = logging.getLogger("lumen3d")

SKY = (0.62, 0.74, 0.86)
LOOK_AT = np.array([0.0, 0.0, 0.45])


def procedural_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) uint8: value noise over several octaves plus random discs and boxes."""
    img = np.zeros((size, size, 3), np.float32)
    for cells, weight in ((4, 0.35), (12, 0.3), (40, 0.2), (size // 6, 0.15)):
        grid = rng.random((cells, cells, 3), dtype=np.float32)
        up = Image.fromarray((grid * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
        img += weight * np.asarray(up, np.float32) / 255.0
    pil = Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(size // 6):
        x, y = rng.integers(0, size, 2)
        r = int(rng.integers(size // 120 + 2, size // 25 + 4))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
        else:
            draw.rectangle([x - r, y - r // 2, x + r, y + r // 2], fill=color)
    return np.asarray(pil)


def _ground(half: float):
    import open3d as o3d

    m = o3d.geometry.TriangleMesh()
    m.vertices = o3d.utility.Vector3dVector([[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]])
    m.triangles = o3d.utility.Vector3iVector([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 0], [1, 1], [0, 1]], np.float64)
    m.triangle_uvs = o3d.utility.Vector2dVector(uv)
    m.triangle_material_ids = o3d.utility.IntVector([0, 0])
    return m


def scene_meshes(rng: np.random.Generator) -> list[tuple[str, object, np.ndarray]]:
    """(name, Open3D mesh with UVs, texture) for the ground and five objects around the origin."""
    import open3d as o3d

    G = o3d.geometry.TriangleMesh
    items = [("ground", _ground(3.0), 1024)]
    box = G.create_box(0.9, 0.9, 0.9, create_uv_map=True, map_texture_to_each_face=True)
    box.translate([0.45, 0.25, 0.0])
    items.append(("box", box, 256))
    tall = G.create_box(0.45, 0.45, 1.3, create_uv_map=True, map_texture_to_each_face=True)
    tall.rotate(tall.get_rotation_matrix_from_xyz([0, 0, 0.5]), center=[0, 0, 0])
    tall.translate([-1.2, 0.6, 0.0])
    items.append(("tower", tall, 256))
    sphere = G.create_sphere(0.55, resolution=48, create_uv_map=True)
    sphere.translate([-0.7, -0.7, 0.55])
    items.append(("sphere", sphere, 512))
    cyl = G.create_cylinder(0.3, 1.0, resolution=48, split=4, create_uv_map=True)
    cyl.translate([0.6, -1.1, 0.5])
    items.append(("cylinder", cyl, 512))
    cone = G.create_cone(0.4, 0.9, resolution=48, split=2, create_uv_map=True)
    cone.translate([1.3, 0.9, 0.0])
    items.append(("cone", cone, 256))
    return [(name, mesh, procedural_texture(rng, size)) for name, mesh, size in items]


def orbit_cameras(views: int, width: int, height: int, radius: float = 4.2) -> list[tuple[Intrinsics, np.ndarray]]:
    """Cameras on a ring around the scene, alternating between two heights, looking at it."""
    focal = 0.85 * width
    intr = Intrinsics(width, height, focal, focal, width / 2.0, height / 2.0)
    cams = []
    for k in range(views):
        az = 2 * np.pi * k / views
        el = np.radians(28.0 if k % 2 == 0 else 42.0)
        eye = LOOK_AT + radius * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        cams.append((intr, look_at(eye, LOOK_AT, up=(0.0, 0.0, 1.0))))
    return cams


def generate_scene(out: Path, views: int = 32, width: int = 400, height: int = 300, seed: int = 0) -> list[Frame]:
    """Render the scene into out/images/ and write out/transforms.json with the true cameras."""
    import open3d as o3d
    from open3d.visualization import rendering

    from engine.progress import track

    rng = np.random.default_rng(seed)
    frames = []
    colours = Colours(linear=False)  # unlit textures, written as painted
    with OffscreenView(width, height, background=SKY, lit=False, colours=colours) as view:
        for name, mesh, tex in scene_meshes(rng):
            mat = rendering.MaterialRecord()
            mat.shader = "defaultUnlit"
            mat.albedo_img = o3d.geometry.Image(colours.texture(tex))
            mesh.paint_uniform_color([1.0, 1.0, 1.0])  # Open3D multiplies textures by vertex colours, 0.5 when absent
            view.add([Drawable(name, mesh, mat)])
        (out / "images").mkdir(parents=True, exist_ok=True)
        for k, (intr, c2w) in enumerate(track(orbit_cameras(views, width, height), "rendering built-in photos")):
            img = view.render(View(intr.K, c2w, width, height))
            path = out / "images" / f"frame_{k:04d}.png"
            save_png(img, path)
            frames.append(Frame(path.name, path, intr, c2w))
    write_nerfstudio(out / "transforms.json", frames, out)
    log.info("built-in scene: %d photos at %dx%d in %s", views, width, height, out)
    return frames
