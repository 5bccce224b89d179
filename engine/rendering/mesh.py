"""Rendering a textured mesh through our kernels: cameras to clip space, rasterize, interpolate UVs,
positions and normals, sample the material's maps (mipmapped), shade (unlit, Lambert, or PBR with
image-based and point lights), composite over a background and antialias the silhouettes — every step
differentiable, so textures (Paint-it), materials and vertex positions can be optimised through it.
Also the inverse: baking vertex colours, a field's colour or a set of renders into a UV texture."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.cameras import Cameras
from engine.rendering.pbr import Environment, direct_light, linear_to_srgb, srgb_to_linear
from kernels import mesh as ops
from scenes.textured_mesh import TexturedMesh, welded_faces

SHADINGS = ("unlit", "lambert", "pbr")


def projection(cameras: Cameras, near: float, far: float) -> Tensor:
    """(B, 4, 4) world → clip matrices for OpenCV pinhole cameras: pixel (X, Y) of the image (row 0 at
    the top) lands at the rasterizer's pixel (X, Y); depth −1 at `near`, 1 at `far`. Lens distortion is
    not modelled (a mesh's straight edges stay straight)."""
    P = torch.zeros(len(cameras), 4, 4, dtype=torch.float64, device=cameras.device)
    for i, k in enumerate(cameras.intrinsics):
        W, H = k.width, k.height
        P[i, 0, 0], P[i, 0, 2] = 2 * k.fx / W, 2 * k.cx / W - 1
        P[i, 1, 1], P[i, 1, 2] = 2 * k.fy / H, 2 * k.cy / H - 1
        P[i, 2, 2], P[i, 2, 3] = (far + near) / (far - near), -2 * far * near / (far - near)
        P[i, 3, 2] = 1
    return P @ torch.linalg.inv(cameras.c2w)


def tangents(vertices: Tensor, faces: Tensor, uvs: Tensor, normals: Tensor) -> Tensor:
    """Per-vertex tangent frames from the UVs (V, 4): tangent along +u, Gram-Schmidt against the
    normal, and the handedness w (±1) of the bitangent, which points up the image (−v here, as glTF's
    normal maps expect)."""
    v0, v1, v2 = (vertices[faces[:, k]] for k in range(3))
    t0, t1, t2 = (uvs[faces[:, k]] for k in range(3))
    e1, e2, d1, d2 = v1 - v0, v2 - v0, t1 - t0, t2 - t0
    r = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    r = torch.where(r.abs() > 1e-12, 1 / r, torch.zeros_like(r))[:, None]
    tu = (e1 * d2[:, 1:] - e2 * d1[:, 1:]) * r
    tv = (e2 * d1[:, :1] - e1 * d2[:, :1]) * r
    acc_u = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1), tu.repeat_interleave(3, 0))
    acc_v = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1), tv.repeat_interleave(3, 0))
    t = F.normalize(acc_u - (acc_u * normals).sum(-1, keepdim=True) * normals, dim=-1)
    w = torch.where((torch.cross(normals, t, dim=-1) * -acc_v).sum(-1) < 0, -1.0, 1.0)
    return torch.cat([t, w[:, None]], -1)


@dataclass
class GBuffer:
    """The geometry of a render, each (B, H, W, C) unless said: clip positions (B, V, 4), the
    rasterization, coverage, UVs and their pixel derivatives (None without UVs), world positions,
    interpolated normals, directions to the eye, the UV tangent frame (None unless the renderer has
    tangents) and camera depth."""

    clip: Tensor
    rast: Tensor
    hit: Tensor
    uv: Tensor | None
    uv_da: Tensor | None
    world: Tensor
    normal: Tensor
    view: Tensor
    tangent: Tensor | None
    bitangent: Tensor | None
    depth: Tensor

    def select(self, index) -> "GBuffer":
        """The views at `index` (the clip positions' and every map's first dimension)."""
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return GBuffer(*(pick(getattr(self, f)) for f in self.__dataclass_fields__))

    @staticmethod
    def cat(parts: list["GBuffer"]) -> "GBuffer":
        join = lambda ts: None if ts[0] is None else torch.cat(ts)  # noqa: E731
        return GBuffer(*(join([getattr(p, f) for p in parts]) for f in GBuffer.__dataclass_fields__))


@dataclass
class MeshRender:
    """What one render gives, each (B, H, W, C): colour (display sRGB), coverage, camera depth,
    world normals and the raw rasterization."""

    rgb: Tensor
    alpha: Tensor
    depth: Tensor
    normal: Tensor
    rast: Tensor
    extras: dict = field(default_factory=dict)


class MeshRenderer:
    """A mesh made ready once (on a device, topology for antialiasing, normals and tangents) and
    rendered from any cameras. `maps` overrides the material's textures for one part (Paint-it's
    network output): a dict of base_color (sRGB), orm and normal, (H, W, C) or (B, H, W, C)."""

    def __init__(self, mesh: TexturedMesh, device="cpu", near: float = 0.01, far: float = 100.0,
                 tangent_frames: bool = False):
        """tangent_frames: compute the UV tangent frame even when no material has a normal map (a
        normal map given later through `maps`)."""
        self.mesh = mesh
        self.device = torch.device(device)
        self.near, self.far = near, far
        self.vertices = mesh.vertices.to(self.device)
        self.faces = mesh.faces.to(self.device)
        self.topology = ops.antialias_topology(welded_faces(mesh.vertices, mesh.faces)).to(self.device)
        self.normals = mesh.vertex_normals().to(self.device)
        self.uvs = None if mesh.uvs is None else mesh.uvs.to(self.device)
        self.tangents = None
        if self.uvs is not None and (tangent_frames or any(p.material.normal is not None for p in mesh.parts)):
            self.tangents = tangents(self.vertices, self.faces, self.uvs, self.normals)
        self.face_part = mesh.face_part().to(self.device)
        self._mips: dict[tuple[int, str], list[Tensor]] = {}  # fixed textures' pyramids, built once

    def _sample(self, key: tuple[int, str], tex: Tensor, uv: Tensor, uv_da: Tensor, own: bool) -> Tensor:
        """Mipmapped lookup; the pyramid of the mesh's own (fixed) maps is built once, a given map's
        every time (it may be trained, or a new tensor each call)."""
        if not own or tex.requires_grad:
            return ops.texture(tex.to(self.device), uv, uv_da, "linear-mipmap-linear")
        if key not in self._mips:
            t = tex.to(self.device, uv.dtype)
            self._mips[key] = ops.mip_pyramid(t[None] if t.dim() == 3 else t)
        return ops.texture(self._mips[key][0], uv, uv_da, "linear-mipmap-linear", mips=self._mips[key])

    def _sample_given(self, k: int, given: dict, uv: Tensor | None, uv_da: Tensor | None) -> dict[str, Tensor]:
        """The given maps sampled at the pixels; maps of one size share one lookup (one mip pyramid
        and one pass for all their channels: a painted texture's three maps cost one)."""
        names = [n for n in ("base_color", "orm", "normal") if n in given]
        if uv is None or not names:
            return {}
        texs = [given[n][..., :3] for n in names]
        if len({t.shape[:-1] for t in texs}) == 1:
            s = self._sample((k, "given"), torch.cat(texs, -1), uv, uv_da, False)
            return dict(zip(names, s.split(3, -1)))
        return {n: self._sample((k, n), t, uv, uv_da, False) for n, t in zip(names, texs)}

    def material_maps(self, rast: Tensor, uv: Tensor | None, uv_da: Tensor | None, maps: dict | None) -> dict[str, Tensor]:
        """Per pixel: base colour (sRGB), roughness, metallic, occlusion and tangent-space normal."""
        B, H, W = rast.shape[:3]
        part = torch.where(rast[..., 3] > 0, self.face_part[(rast[..., 3].long() - 1).clamp(min=0)], -1)
        out = {"base_color": torch.ones(B, H, W, 3, device=self.device), "roughness": torch.ones(B, H, W, 1, device=self.device),
               "metallic": torch.zeros(B, H, W, 1, device=self.device), "occlusion": torch.ones(B, H, W, 1, device=self.device),
               "normal": torch.tensor([0.5, 0.5, 1.0], device=self.device).expand(B, H, W, 3)}
        for k, p in enumerate(self.mesh.parts):
            m = p.material
            mask = (part == k)[..., None]
            if not bool(mask.any()):
                continue
            given = (maps or {}) if k == 0 or len(self.mesh.parts) == 1 else {}
            factor = torch.tensor(m.base_color_factor[:3], device=self.device)
            vals = {"base_color": factor.expand(B, H, W, 3), "roughness": torch.full((B, H, W, 1), m.roughness, device=self.device),
                    "metallic": torch.full((B, H, W, 1), m.metallic, device=self.device)}
            sampled = self._sample_given(k, given, uv, uv_da)
            pick = lambda name, key, own: sampled[name] if name in sampled else \
                self._sample((k, key), own, uv, uv_da, True)  # noqa: E731
            base = given.get("base_color", m.base_color)
            if base is not None and uv is not None:
                vals["base_color"] = pick("base_color", "base", base[..., :3]) * factor
            orm = given.get("orm", m.orm)
            if orm is not None and uv is not None:
                s = pick("orm", "orm", orm)
                vals["roughness"] = s[..., 1:2] * m.roughness
                vals["metallic"] = s[..., 2:3] * m.metallic
                if m.has_occlusion or "orm" in given:
                    vals["occlusion"] = s[..., 0:1]
            normal = given.get("normal", m.normal)
            if normal is not None and uv is not None:
                vals["normal"] = pick("normal", "normal", normal)
            for name, v in vals.items():
                out[name] = torch.where(mask, v, out[name])
        return out

    def gbuffer(self, cameras: Cameras, vertices: Tensor | None = None) -> GBuffer:
        """Everything a shade needs that depends only on the geometry and the cameras (one size).
        With fixed geometry it can be computed once per view and shaded many times (Paint-it)."""
        W, H = cameras.size
        verts = (self.vertices if vertices is None else vertices).to(self.device)
        mvp = projection(cameras, self.near, self.far).to(self.device, verts.dtype)
        hom = torch.cat([verts, torch.ones_like(verts[:, :1])], 1)
        clip = torch.einsum("bij,vj->bvi", mvp, hom).contiguous()
        rast, rast_db = ops.rasterize(clip, self.faces, (H, W))
        hit = (rast[..., 3:] > 0).to(verts.dtype)
        uv = uv_da = None
        if self.uvs is not None:
            uv, uv_da = ops.interpolate(self.uvs, rast, self.faces, rast_db)
        world, _ = ops.interpolate(verts, rast, self.faces)
        normal, _ = ops.interpolate(self.normals, rast, self.faces)
        normal = F.normalize(normal, dim=-1)
        eye = cameras.c2w[:, :3, 3].to(self.device, verts.dtype)[:, None, None, :]
        tangent = bitangent = None
        if self.tangents is not None:
            tan, _ = ops.interpolate(self.tangents, rast, self.faces)
            tangent = F.normalize(tan[..., :3] - (tan[..., :3] * normal).sum(-1, keepdim=True) * normal, dim=-1)
            bitangent = torch.cross(normal, tangent, dim=-1) * torch.sign(tan[..., 3:]).clamp(min=-1)
        cam_z = torch.einsum("bij,bhwj->bhwi", torch.linalg.inv(cameras.c2w).to(self.device, verts.dtype)[:, :3, :3],
                             world - eye)[..., 2:]
        depth = torch.where(hit > 0, cam_z, torch.zeros_like(hit))
        return GBuffer(clip, rast, hit, uv, uv_da, world, normal, F.normalize(eye - world, dim=-1), tangent, bitangent,
                       depth)

    def render(self, cameras: Cameras, shading: str = "unlit", background: Tensor | None = None,
               environment: Environment | None = None, lights: list[tuple[Tensor, Tensor]] = (),
               maps: dict | None = None, antialias: bool = True, vertices: Tensor | None = None) -> MeshRender:
        """Render from `cameras` (one size). background: (3,) or (B, H, W, 3) sRGB (default white).
        lights: (position (3,), radiance (3,)) point lights. vertices: positions to use instead of
        the mesh's (geometry optimisation)."""
        return self.shade(self.gbuffer(cameras, vertices), shading, background, environment, lights, maps, antialias)

    def shade(self, gb: GBuffer, shading: str = "unlit", background: Tensor | None = None,
              environment: Environment | None = None, lights: list[tuple[Tensor, Tensor]] = (),
              maps: dict | None = None, antialias: bool = True) -> MeshRender:
        """`render`'s second half, on a G-buffer (see `gbuffer`)."""
        if shading not in SHADINGS:
            raise ValueError(f"unknown shading {shading!r} (one of {', '.join(SHADINGS)})")
        hit, normal, world, view = gb.hit, gb.normal, gb.world, gb.view
        if self.mesh.colors is not None and not self.mesh.textured:
            base, _ = ops.interpolate(self.mesh.colors.to(self.device), gb.rast, self.faces)
            mat = {"base_color": base, "roughness": torch.ones_like(hit), "metallic": torch.zeros_like(hit),
                   "occlusion": torch.ones_like(hit), "normal": None}
        else:
            mat = self.material_maps(gb.rast, gb.uv, gb.uv_da, maps)
        if mat["normal"] is not None and gb.tangent is not None and shading != "unlit":
            m = mat["normal"] * 2 - 1
            normal = F.normalize(m[..., :1] * gb.tangent + m[..., 1:2] * gb.bitangent + m[..., 2:3] * normal, dim=-1)
        if shading == "unlit":
            rgb = mat["base_color"]
        else:
            base = srgb_to_linear(mat["base_color"])
            if shading == "lambert":
                rough, metal = torch.ones_like(hit), torch.zeros_like(hit)
            else:
                rough, metal = mat["roughness"], mat["metallic"]
            lin = torch.zeros_like(base)
            if environment is not None:
                env = environment.to(self.device)
                if shading == "lambert":
                    lin = lin + mat["occlusion"] * base * env.irradiance(normal) / torch.pi
                else:
                    lin = lin + env.shade(base, rough, metal, mat["occlusion"], normal, view)
            for position, radiance in lights:
                d = position.to(self.device, world.dtype) - world
                dist2 = (d * d).sum(-1, keepdim=True).clamp_min(1e-8)
                lin = lin + direct_light(base, rough, metal, normal, view, d / dist2.sqrt(),
                                         radiance.to(self.device, world.dtype) / dist2)
            rgb = linear_to_srgb(lin)
        bg = torch.ones(3, device=self.device) if background is None else background.to(self.device)
        rgb = rgb * hit + bg.expand_as(rgb) * (1 - hit)
        alpha = hit
        if antialias:
            both = ops.antialias(torch.cat([rgb, alpha], -1), gb.rast, gb.clip, self.faces, self.topology)
            rgb, alpha = both[..., :3], both[..., 3:]
        return MeshRender(rgb, alpha, gb.depth, normal * hit, gb.rast, {"uv": gb.uv})


# ------------------------------------------------------------------------------------ baking
def uv_rasterize(mesh: TexturedMesh, size: int, device="cpu") -> tuple[Tensor, Tensor]:
    """The mesh drawn in its UV layout at size × size: rast (1, size, size, 4) and the surface point of
    each texel (1, size, size, 3) (0 off the charts)."""
    if mesh.uvs is None:
        raise ValueError("the mesh has no UVs: unwrap it first (scenes.textured_mesh.unwrap)")
    uv = mesh.uvs.to(device, torch.float32)
    pos = torch.cat([uv * 2 - 1, torch.zeros_like(uv[:, :1]), torch.ones_like(uv[:, :1])], 1)
    faces = mesh.faces.to(device)
    rast, _ = ops.rasterize(pos, faces, (size, size))
    points, _ = ops.interpolate(mesh.vertices.to(device, torch.float32), rast, faces)
    return rast, points


def dilate(tex: Tensor, mask: Tensor, pixels: int = 8) -> Tensor:
    """Fill `pixels` texels around the charts with the nearest chart colour, so that mipmapping and
    bilinear filtering at seams do not pull in the background. tex (H, W, C), mask (H, W) bool."""
    tex = tex.clone()
    filled = mask.clone()
    for _ in range(pixels):
        x = (tex * filled[..., None]).permute(2, 0, 1)[None]
        w = filled[None, None].to(tex.dtype)
        s = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        n = F.avg_pool2d(w, 3, 1, 1, count_include_pad=False)
        grow = (n[0, 0] > 0) & ~filled
        avg = (s[0] / n[0].clamp_min(1e-8)).permute(1, 2, 0)
        tex[grow] = avg[grow]
        filled = filled | grow
    return tex


def bake_vertex_colors(mesh: TexturedMesh, size: int = 1024) -> Tensor:
    """The mesh's vertex colours as a UV texture (size, size, 3) sRGB, dilated past the charts."""
    if mesh.colors is None:
        raise ValueError("the mesh has no vertex colours to bake")
    rast, _ = uv_rasterize(mesh, size)
    col, _ = ops.interpolate(mesh.colors.float(), rast, mesh.faces)
    return dilate(col[0], rast[0, ..., 3] > 0)


def bake_function(mesh: TexturedMesh, fn, size: int = 1024, chunk: int = 1 << 16) -> Tensor:
    """fn(points (N, 3), normals (N, 3)) → colours (N, 3), evaluated at every texel's surface point
    (e.g. a radiance field seen along the inward normal), as a dilated UV texture (size, size, 3)."""
    rast, points = uv_rasterize(mesh, size)
    normals, _ = ops.interpolate(mesh.vertex_normals().float(), rast, mesh.faces)
    mask = rast[0, ..., 3] > 0
    pts, nrm = points[0][mask], F.normalize(normals[0][mask], dim=-1)
    out = torch.zeros(size, size, 3)
    cols = []
    with torch.no_grad():
        for i in range(0, len(pts), chunk):
            cols.append(fn(pts[i:i + chunk], nrm[i:i + chunk]).float().cpu())
    if cols:
        out[mask] = torch.cat(cols)
    return dilate(out, mask)


def bake_renders(renderer: MeshRenderer, cameras: Cameras, images: Tensor, size: int = 1024, steps: int = 200,
                 lr: float = 0.1, progress=None) -> Tensor:
    """A UV texture (size, size, 3) that reproduces `images` (B, H, W, 3) sRGB when rendered unlit from
    `cameras`: fitted by gradient descent through the differentiable renderer (mipmaps spread each
    pixel's gradient over the texels it covers)."""
    tex = torch.full((size, size, 3), 0.5, device=renderer.device, requires_grad=True)
    opt = torch.optim.Adam([tex], lr=lr)
    target = images.to(renderer.device)
    for step in range(steps):
        out = renderer.render(cameras, "unlit", maps={"base_color": tex}, antialias=False)
        loss = ((out.rgb - target) ** 2 * out.alpha).sum() / out.alpha.sum().clamp_min(1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            tex.clamp_(0, 1)
        if progress is not None:
            progress(step, float(loss.detach()))
    return tex.detach()
