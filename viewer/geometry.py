"""Open3D geometry and materials for each kind of content: one description, two front ends
(the offscreen renderer and the interactive window both add these `Drawable`s)."""
from __future__ import annotations

import math

import numpy as np

from viewer.content import Cameras, Gaussians, Item, Mesh, Points, Sequence
from viewer.mesh_files import read_mesh
from viewer.offscreen import Colours, Drawable

CAMERA_COLOR = (0.95, 0.35, 0.1)
BODY_COLOR = (0.72, 0.62, 0.55)


def native_splats_available() -> bool:
    """Open3D ≥ 0.20 renders Gaussian splats itself (a compute pipeline; CPU Vulkan works)."""
    from open3d.visualization import rendering

    return hasattr(rendering.MaterialRecord(), "gaussian_splat_sh_degree")


def resolve_splat_mode(mode: str, offscreen: bool) -> str:
    """auto: offscreen, our rasterizer (exact; Open3D 0.20's splat pass drops large splats, see
    show.py); in a window, Open3D's splat renderer, or splat centres without one."""
    from engine.errors import InputError

    if mode == "auto":
        return "raster" if offscreen else ("native" if native_splats_available() else "points")
    if mode == "native" and not native_splats_available():
        raise InputError(None, "--splats native needs Open3D ≥ 0.20 (its Gaussian-splat renderer); use --splats points")
    if mode == "raster" and not offscreen:
        raise InputError(None, "--splats raster renders offscreen only (with --png or --video)")
    return mode


def _material(shader: str, point_size: float = 3.0, color=(1.0, 1.0, 1.0, 1.0)):
    from open3d.visualization import rendering

    m = rendering.MaterialRecord()
    m.shader = shader
    m.point_size = point_size
    m.base_color = color
    return m


def splat_point_cloud(params: dict):
    """The tensor point cloud Open3D's splat renderer reads (its in-memory Gaussian layout:
    linear scales, logit opacity, wxyz rotation, SH DC and rest as (N, K-1, 3))."""
    import open3d as o3d
    import torch

    p = {k: v.detach().cpu().float() for k, v in params.items()}
    # Open3D 0.20 drops the last splat that passes its opacity cull (seen with 2–5 known
    # splats): append a sub-pixel, barely opaque one to be dropped instead.
    p = {k: torch.cat([v, v[:1]]) for k, v in p.items()}
    p["log_scales"][-1] = -12.0
    p["opacity_logits"][-1] = math.log(0.005 / 0.995)
    t = lambda x: o3d.core.Tensor(np.ascontiguousarray(x.numpy().astype(np.float32)))  # noqa: E731
    pc = o3d.t.geometry.PointCloud(t(p["means"]))
    pc.point["scale"] = t(torch.exp(p["log_scales"]))
    pc.point["opacity"] = t(p["opacity_logits"][:, None])
    pc.point["rot"] = t(p["quats"])
    pc.point["f_dc"] = t(p["sh_dc"][:, 0])
    if p["sh_rest"].shape[1]:
        pc.point["f_rest"] = t(p["sh_rest"])
    return pc


def splat_sh_degree(params: dict) -> int:
    return int(round((params["sh_rest"].shape[1] + 1) ** 0.5)) - 1


def gaussians_drawable(item: Gaussians, mode: str, colours: Colours) -> Drawable:
    if mode == "native":
        m = _material("gaussianSplat")
        m.gaussian_splat_sh_degree = splat_sh_degree(item.params)
        # A close-up splat covers many 16×16 tiles: Open3D culls a splat over the per-splat limit
        # and truncates past the total budget (avg × N), so small scenes get a generous budget.
        n = len(item.params["means"])
        m.gaussian_splat_max_tiles_per_splat = 4096
        m.gaussian_splat_avg_tiles_per_splat = int(np.clip(4_000_000 // max(n, 1), 32, 4096))
        return Drawable(item.name, splat_point_cloud(item.params), m)
    return Drawable(item.name, splat_centres(item.params, colours), _material("defaultUnlit", point_size=3.0))


def splat_centres(params: dict, colours: Colours, min_opacity: float = 0.05):
    """Fallback: the centres of visible Gaussians, coloured from the SH DC term."""
    import open3d as o3d
    import torch

    from scenes.gaussians import sh_dc_to_rgb

    alpha = torch.sigmoid(params["opacity_logits"].detach().float())
    keep = alpha > min_opacity
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(params["means"].detach()[keep].double().numpy()))
    rgb = sh_dc_to_rgb(params["sh_dc"].detach()[keep][:, 0]).clamp(0, 1).double().numpy()
    pc.colors = o3d.utility.Vector3dVector(colours.vertex(rgb))
    return pc


def points_drawable(item: Points, colours: Colours) -> Drawable:
    import open3d as o3d

    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(item.xyz, np.float64)))
    rgb = np.full((len(item.xyz), 3), 0.3) if item.rgb is None else item.rgb
    pc.colors = o3d.utility.Vector3dVector(colours.vertex(rgb))
    return Drawable(item.name, pc, _material("defaultUnlit", point_size=3.0))


def mesh_drawable(item: Mesh, colours: Colours) -> Drawable:
    import open3d as o3d

    geometry, is_model = read_mesh(item.path)
    if is_model:
        return Drawable(item.name, geometry, None, is_model=True)
    rgb = np.asarray(geometry.vertex_colors) if geometry.has_vertex_colors() else np.full((len(geometry.vertices), 3), 0.7)
    geometry.vertex_colors = o3d.utility.Vector3dVector(colours.vertex(rgb))
    return Drawable(item.name, geometry, _material("defaultLit"))


def frustum_size(c2w: np.ndarray, extent: float) -> float:
    """Frustum depth: half the median spacing between neighbouring cameras, kept between 3%
    and 10% of the cameras' own extent (dense rings of test cameras would make dots, sparse
    ones would overlap); a lone camera gets 5% of the scene's `extent`."""
    centres = c2w[:, :3, 3]
    span = float(np.linalg.norm(np.ptp(centres, 0))) if len(centres) > 1 else 0.0
    if span <= 0:
        return max(0.05 * extent, 1e-3)
    d = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    return float(np.clip(0.5 * np.median(d.min(1)), 0.03 * span, 0.1 * span))


def frustum_corners(c2w: np.ndarray, intr, depth: float) -> np.ndarray:
    """(5, 3): the camera centre, then the image corners at `depth` (TL, TR, BR, BL)."""
    uv = np.array([[0, 0], [intr.width, 0], [intr.width, intr.height], [0, intr.height]], np.float64)
    rays = np.stack([(uv[:, 0] - intr.cx) / intr.fx, (uv[:, 1] - intr.cy) / intr.fy, np.ones(4)], 1) * depth
    pts = rays @ c2w[:3, :3].T + c2w[:3, 3]
    return np.concatenate([c2w[None, :3, 3], pts])


def cameras_drawables(item: Cameras, extent: float, colours: Colours, thumbnails: bool = True,
                      max_thumbnails: int = 300, thumb_px: int = 96) -> list[Drawable]:
    import open3d as o3d

    depth = frustum_size(item.c2w, extent)
    pts, lines = [], []
    for k, (c2w, intr) in enumerate(zip(item.c2w, item.intrinsics)):
        pts.append(frustum_corners(c2w, intr, depth))
        b = 5 * k
        lines += [[b, b + 1], [b, b + 2], [b, b + 3], [b, b + 4], [b + 1, b + 2], [b + 2, b + 3], [b + 3, b + 4],
                  [b + 4, b + 1]]
    ls = o3d.geometry.LineSet(o3d.utility.Vector3dVector(np.concatenate(pts)), o3d.utility.Vector2iVector(lines))
    ls.paint_uniform_color(colours.vertex(CAMERA_COLOR))
    mat = _material("unlitLine")
    mat.line_width = 2.0
    out = [Drawable(item.name, ls, mat)]
    images = item.images or []
    if thumbnails and images and len(item.c2w) <= max_thumbnails:
        for k, (c2w, intr, path) in enumerate(zip(item.c2w, item.intrinsics, images)):
            if path is not None:
                out.append(_thumbnail(f"{item.name} image {k}", frustum_corners(c2w, intr, depth)[1:], path, thumb_px,
                                      colours))
    return out


def _thumbnail(name: str, corners: np.ndarray, path, px: int, colours: Colours) -> Drawable:
    """The photo on its frustum's image plane: a textured quad (unlit, so it shows as shot)."""
    import open3d as o3d
    from PIL import Image

    img = Image.open(path)
    if img.mode in ("RGBA", "LA", "P"):  # transparent photos (Blender scenes) over white
        rgba = img.convert("RGBA")
        img = Image.new("RGB", rgba.size, (255, 255, 255))
        img.paste(rgba, mask=rgba.getchannel("A"))
    img = img.convert("RGB")
    img.thumbnail((px, px))
    arr = colours.texture(np.asarray(img, np.uint8))
    # both windings: the photo shows from either side of its frustum
    tris = [[0, 2, 1], [0, 3, 2], [0, 1, 2], [0, 2, 3]]
    uv_of = {0: (0, 1), 1: (1, 1), 2: (1, 0), 3: (0, 0)}  # v runs up the texture
    m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(corners), o3d.utility.Vector3iVector(tris))
    m.triangle_uvs = o3d.utility.Vector2dVector(np.array([uv_of[v] for t in tris for v in t], np.float64))
    m.triangle_material_ids = o3d.utility.IntVector([0] * len(tris))
    m.paint_uniform_color([1.0, 1.0, 1.0])  # Open3D multiplies textures by vertex colours, 0.5 when absent
    mat = _material("defaultUnlit")
    mat.albedo_img = o3d.geometry.Image(arr)
    return Drawable(name, m, mat)


def body_mesh(vertices: np.ndarray, faces: np.ndarray, colours: Colours):
    import open3d as o3d

    m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(vertices, np.float64)),
                                  o3d.utility.Vector3iVector(np.asarray(faces, np.int32)))
    m.compute_vertex_normals()
    m.paint_uniform_color(colours.vertex(BODY_COLOR))
    return m


def sequence_drawables(item: Sequence, colours: Colours, frame: int | None = None) -> list[Drawable]:
    """One mesh per frame, each with its time (the interactive window animates them); with
    `frame`, only that frame's mesh."""
    seq = item.seq
    frames = range(seq.num_frames) if frame is None else [frame]
    mat = _material("defaultLit")
    return [Drawable(f"{item.name} {t:05d}", body_mesh(seq.vertices[t], seq.faces, colours), mat, time=t / seq.fps)
            for t in frames]


def drawables(items: list[Item], splat_mode: str, extent: float, colours: Colours, frame: int | None = 0,
              thumbnails: bool = True) -> list[Drawable]:
    out: list[Drawable] = []
    for it in items:
        if isinstance(it, Gaussians):
            if splat_mode != "raster":  # raster: drawn by our kernels, composited in show.py
                out.append(gaussians_drawable(it, splat_mode, colours))
        elif isinstance(it, Points):
            out.append(points_drawable(it, colours))
        elif isinstance(it, Mesh):
            out.append(mesh_drawable(it, colours))
        elif isinstance(it, Cameras):
            out += cameras_drawables(it, extent, colours, thumbnails)
        elif isinstance(it, Sequence):
            out += sequence_drawables(it, colours, frame)
    return out
