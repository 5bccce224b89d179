"""Paint-it on our mesh renderer: a texture network (`scenes.texture_net`) paints PBR maps in the
mesh's UV layout; the maps are rendered with split-sum image-based lighting from a few views per
step and the guidance's Score Distillation gradient flows back through shading, mipmapped texture
sampling and antialiasing to the network.

The geometry never changes, so each view's rasterization (its G-buffer: UVs and their derivatives,
normals, tangent frames, view directions) is computed once for a bank of random views and reused;
a step only samples the new maps, shades, and runs the network and the guidance.

Frames: the mesh is turned so that its up axis is +z and its front faces +x (azimuth 0), centred
and scaled to extent 2 (Paint-it's normalisation); exports keep the user's own frame.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from engine.cameras import Cameras, sample_orbit_cameras
from engine.data.cameras import Intrinsics, look_at
from engine.guidance import Views
from engine.methods.generation import plain_backgrounds
from engine.methods.generation import orbit_cameras
from engine.rendering import RenderOutput
from engine.rendering.mesh import GBuffer, MeshRenderer
from engine.rendering.pbr import Environment, sky
from engine.training.method import Method
from scenes.textured_mesh import Material, TexturedMesh
from scenes.texture_net import TextureNetwork, decode_maps

log = logging.getLogger("lumen3d")

EVAL_VIEWS = 8  # held-out views of a known answer, between the turntable's azimuths
EVAL_SIZE = 256
DECAYS = 15  # Paint-it multiplies its learning rate by 0.9 every 100 of 1,500 steps
HEAD_SHARE = 0.13  # a standing body's head: the top 13% of its height
# y up, front +z (glTF, OBJ, bodies) → z up, front +x (our cameras): a rotation (cyclic permutation)
Y_UP = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@dataclass
class PaintSubject:
    """What is painted: the mesh in the user's frame, with UVs the texture can use (the file's, or
    xatlas'), its up axis, whether it is a body (a face view), where its UVs came from, and the
    mesh as read (its own materials: the known answer)."""

    mesh: TexturedMesh
    up: str
    body: bool = False
    uv_source: str = "file"
    source: str = ""
    original: TexturedMesh | None = None
    uv_why: str = ""


def normalise(vertices: Tensor, up: str) -> tuple[Tensor, Tensor]:
    """Vertices turned to z up / front +x, centred on their bounding box and scaled to extent 2;
    and the rotation R (normals turn with it)."""
    R = Y_UP if up == "y" else torch.eye(3)
    v = vertices.double() @ R.double().T
    lo, hi = v.min(0).values, v.max(0).values
    centre = (lo + hi) / 2
    scale = 2.0 / float((hi - lo).max())
    return ((v - centre) * scale).float(), R


def environment_radiance(path: Path | None) -> Tensor:
    """The lighting's equirect radiance (H, W, 3) linear: the user's map or the built-in sky."""
    if path is None:
        return sky()
    from engine.data.hdr import read_environment

    return torch.as_tensor(read_environment(path), dtype=torch.float32)


class ViewBank:
    """Random views whose G-buffers are computed once (the geometry is fixed). `take(idx)` gives a
    batch's G-buffer, cameras, angles and prompt directions."""

    def __init__(self, renderer: MeshRenderer, cameras: Cameras, azimuth: Tensor, elevation: Tensor,
                 directions: list[str | None], chunk: int = 8):
        with torch.no_grad():
            self.gbuffer = GBuffer.cat([renderer.gbuffer(cameras[i:i + chunk]) for i in range(0, len(cameras), chunk)])
        self.cameras, self.azimuth, self.elevation, self.directions = cameras, azimuth, elevation, directions

    def __len__(self) -> int:
        return len(self.cameras)

    def take(self, idx: list[int]) -> tuple[GBuffer, Cameras, Tensor, Tensor, list[str | None]]:
        i = torch.as_tensor(idx, dtype=torch.long)
        return (self.gbuffer.select(i.to(self.gbuffer.rast.device)), self.cameras[idx], self.azimuth[i],
                self.elevation[i], [self.directions[k] for k in idx])


class PaintIt(Method):
    kind = "paint"

    def __init__(self, cfg, subject: PaintSubject, device: str = "cpu", radiance: Tensor | None = None):
        """radiance: the lighting's equirect map, when the caller has read it already (else
        `cfg.environment` or the built-in sky)."""
        from engine.guidance.stable_diffusion import resolve_precision

        cfg = cfg.resolved()
        self.cfg, self.subject, self.device = cfg, subject, device
        verts, self.R = normalise(subject.mesh.vertices, subject.up)
        normals = None if subject.mesh.normals is None else subject.mesh.normals @ self.R.T
        # factors of 1: the painted maps are the values (glTF multiplies maps by their factors)
        self.mesh = replace(subject.mesh, vertices=verts, normals=normals, colors=None).with_material(
            Material("painted", roughness=1.0, metallic=1.0))
        self.renderer = MeshRenderer(self.mesh, device, tangent_frames=True)
        if radiance is None:
            radiance = environment_radiance(cfg.environment)
        self.env = Environment.from_radiance(radiance).to(device)
        self.net = TextureNetwork(cfg.texture_res, cfg.channels, cfg.scales, cfg.seed).to(
            device, memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.dtype = resolve_precision(cfg.precision, device)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.face = subject.body if cfg.face_view == "auto" else cfg.face_view == "on"
        self.truth = None
        if cfg.guidance == "known-object":
            self.truth = self.known_answer()
            from engine.guidance.known_object import OracleGuidance

            self.guidance = OracleGuidance.from_config(cfg, self.truth_target)
        else:
            from engine.guidance import build_guidance

            face_prompt = cfg.face_prompt or f"the face of {cfg.prompt}"
            self.guidance = build_guidance(cfg, device, {"face": face_prompt} if self.face else None)
        self.fixed = self.fixed_views()
        self.bank = self.make_bank(cfg.view_bank) if cfg.view_bank else None
        self.last_maps: dict[str, Tensor] | None = None

    # ------------------------------------------------------------------ views
    def fixed_views(self) -> ViewBank:
        """The front view (azimuth 0, elevation 0) and, for bodies, a close view of the face."""
        cfg = self.cfg
        s = cfg.render_size
        cams = orbit_cameras(1, s, cfg.camera_distance, cfg.fov, 0.0, 0.0, self.device)
        dirs: list[str | None] = ["front"]
        if self.face:
            v = self.mesh.vertices
            top, bottom = float(v[:, 2].max()), float(v[:, 2].min())
            head = v[v[:, 2] >= top - HEAD_SHARE * (top - bottom)]
            centre = head.mean(0).double().numpy()
            radius = float((head - head.mean(0)).norm(dim=1).max())
            dist = 1.3 * radius / math.tan(math.radians(cfg.fov) / 2)
            f = 0.5 * s / math.tan(math.radians(cfg.fov) / 2)
            c2w = look_at(centre + np.array([dist, 0.0, 0.0]), centre)
            cams = Cameras.from_c2w(np.stack([cams.c2w[0].cpu().numpy(), c2w]), Intrinsics(s, s, f, f, s / 2, s / 2),
                                    self.device)
            dirs.append("face")
        n = len(cams)
        return ViewBank(self.renderer, cams, torch.zeros(n), torch.zeros(n), dirs)

    def random_cameras(self, n: int, generator: torch.Generator) -> tuple[Cameras, Tensor, Tensor]:
        cfg = self.cfg
        d = cfg.camera_distance
        return sample_orbit_cameras(n, cfg.render_size, cfg.render_size, generator, radius=(d, d),
                                    elevation_deg=tuple(cfg.elevation), fov_deg=(cfg.fov, cfg.fov),
                                    device=self.device)

    def make_bank(self, n: int) -> ViewBank:
        cams, az, el = self.random_cameras(n, torch.Generator().manual_seed(self.cfg.seed + 1))
        return ViewBank(self.renderer, cams, az, el, [None] * n)

    def sample_views(self) -> tuple[GBuffer, Views]:
        """A step's views: the front (when there are two or more), the face (bodies) and random ones."""
        cfg = self.cfg
        k = cfg.views - 1 if cfg.views >= 2 else cfg.views
        fixed = list(range(len(self.fixed))) if cfg.views >= 2 else ([1] if self.face else [])
        parts = [self.fixed.take(fixed)] if fixed else []
        if self.bank is not None:
            parts.append(self.bank.take(torch.randint(len(self.bank), (k,), generator=self.gen).tolist()))
        else:
            cams, az, el = self.random_cameras(k, self.gen)
            with torch.no_grad():
                parts.append((self.renderer.gbuffer(cams), cams, az, el, [None] * k))
        gb = GBuffer.cat([p[0] for p in parts])
        cams = Cameras(torch.cat([p[1].c2w for p in parts]), sum((p[1].intrinsics for p in parts), ()))
        az, el = torch.cat([p[2] for p in parts]), torch.cat([p[3] for p in parts])
        dirs = sum((p[4] for p in parts), [])
        B, s = len(cams), cfg.render_size
        return gb, Views(cams, az, el, plain_backgrounds(cfg.background, B, s, self.gen, self.device), dirs)

    # ------------------------------------------------------------------ painting
    def maps(self) -> dict[str, Tensor]:
        """The network's maps (H, W, 3) (base colour sRGB, orm, tangent normal), with gradient."""
        from engine.guidance.stable_diffusion import autocast

        with autocast(self.device, self.dtype):
            return decode_maps(self.net())

    def current_maps(self) -> dict[str, Tensor]:
        if self.last_maps is None:
            with torch.no_grad():
                self.last_maps = {k: v.detach() for k, v in self.maps().items()}
        return self.last_maps

    def train_step(self, step: int, fraction) -> dict:
        cfg = self.cfg
        f = fraction(step - 1)
        lr = cfg.lr * cfg.lr_decay ** math.floor(DECAYS * f)
        for g in self.opt.param_groups:
            g["lr"] = lr
        gb, views = self.sample_views()
        maps = self.maps()
        out = self.renderer.shade(gb, "pbr", views.background, self.env, maps=maps)
        g = self.guidance(out.rgb, views, f)
        self.opt.zero_grad(set_to_none=True)
        g.loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_norm_clip)
        self.opt.step()
        self.last_maps = None  # the weights moved
        return {"loss": g.loss.detach(), **g.info, "lr": lr, "net_grad_norm": norm.detach()}

    def describe(self, s: dict) -> str:
        return f"loss {s['loss']:.4g}  t {s['t']:.3f}  lr {s['lr']:.2e}"

    # ------------------------------------------------------------------ a known answer
    def known_answer(self) -> MeshRenderer:
        """The mesh's own material, rendered as the painting is: its renders are the oracle's targets."""
        m = self.subject.original or self.subject.mesh
        if not m.textured:
            from engine.errors import InputError

            raise InputError(Path(self.subject.source), "--guidance known-object paints a mesh's own texture back, "
                                                        "and this mesh has no texture")
        verts, _ = normalise(m.vertices, self.subject.up)
        normals = None if m.normals is None else m.normals @ self.R.T
        return MeshRenderer(replace(m, vertices=verts, normals=normals), self.device)

    def truth_target(self, views: Views) -> Tensor:
        return self.truth.render(views.cameras, "pbr", views.background, self.env).rgb

    def eval_cameras(self) -> Cameras:
        return orbit_cameras(EVAL_VIEWS, EVAL_SIZE, self.cfg.camera_distance, self.cfg.fov, 20.0, 180.0 / EVAL_VIEWS,
                             self.device)

    def test_views(self):
        if self.truth is None:
            return []
        cams = self.eval_cameras()
        return [(cams[i], lambda i=i: self.truth.render(cams[i], "pbr", None, self.env).rgb[0].cpu())
                for i in range(len(cams))]

    @torch.no_grad()
    def base_color_error(self) -> dict:
        """The painted base colour against the truth's where the held-out views see the mesh: PSNR and
        mean absolute error of their unlit renders over covered pixels."""
        cams = self.eval_cameras()
        mine = self.renderer.render(cams, "unlit", maps=self.current_maps(), antialias=False)
        truth = self.truth.render(cams, "unlit", antialias=False)
        mask = (mine.alpha[..., 0] > 0) & (truth.alpha[..., 0] > 0)
        diff = (mine.rgb - truth.rgb)[mask]
        mse = float((diff ** 2).mean())
        return {"base_color_psnr": -10 * math.log10(max(mse, 1e-12)), "base_color_mae": float(diff.abs().mean())}

    # ------------------------------------------------------------------ results
    @torch.no_grad()
    def render(self, camera: Cameras) -> RenderOutput:
        out = self.renderer.render(camera, "pbr", None, self.env, maps=self.current_maps())
        return RenderOutput(out.rgb[0], out.alpha[0, ..., 0], (out.depth * out.alpha)[0, ..., 0], out.normal[0])

    def video_cameras(self, frames: int) -> Cameras:
        return orbit_cameras(frames, min(self.cfg.render_size, 512), self.cfg.camera_distance, self.cfg.fov, 15.0, 0.0,
                             self.device)

    @torch.no_grad()
    def snapshot_image(self) -> np.ndarray:
        """Front, side, back and other side at 256², and the base colour map, in a row (uint8)."""
        from engine.training.evaluation import to_u8

        cams = orbit_cameras(4, 256, self.cfg.camera_distance, self.cfg.fov, 15.0, 0.0, self.device)
        rgb = self.renderer.render(cams, "pbr", None, self.env, maps=self.current_maps()).rgb
        base = torch.nn.functional.interpolate(self.current_maps()["base_color"].permute(2, 0, 1)[None], (256, 256),
                                               mode="area")[0].permute(1, 2, 0)
        return to_u8(torch.cat([*rgb, base], 1))

    def painted_mesh(self) -> TexturedMesh:
        """The user's mesh, in its own frame, with the painted material."""
        m = self.current_maps()
        mat = Material("painted", base_color=m["base_color"].cpu(), orm=m["orm"].cpu(), normal=m["normal"].cpu(),
                       roughness=1.0, metallic=1.0, has_occlusion=True)
        return self.subject.mesh.with_material(mat)

    def export(self, run) -> dict:
        from scenes.mesh_files import write_glb, write_obj

        mesh = self.painted_mesh()
        glb = write_glb(mesh, run.path("exports", "mesh.glb"))
        obj = write_obj(mesh, run.path("exports", "obj", "mesh.obj"))
        log.info("painted mesh: %s, %s", glb, next(p for p in obj if p.suffix == ".obj"))
        return {"glb": str(glb), "obj": [str(p) for p in obj]}

    def summary(self, train_seconds: float) -> dict:
        cfg = self.cfg
        out = {"prompt": cfg.prompt, "guidance": self.guidance.name, "preset": cfg.preset, "views": cfg.views,
               "render_size": cfg.render_size, "texture_res": cfg.texture_res, "face_view": self.face,
               "uv_source": self.subject.uv_source, "faces": len(self.mesh.faces), "network_dtype": str(self.dtype),
               "guidance_size": getattr(self.guidance, "guidance_size", None)}
        if self.truth is not None:
            out.update(self.base_color_error())
        return out

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "optimizer": self.opt.state_dict(), "generator": self.gen.get_state(),
                "guidance": self.guidance.state_dict()}

    def load_state_dict(self, d: dict, source: Path) -> None:
        self.net.load_state_dict(d["net"])
        self.opt.load_state_dict(d["optimizer"])
        self.gen.set_state(d["generator"])
        self.guidance.load_state_dict(d["guidance"])
        self.last_maps = None

    def meta(self) -> dict:
        cfg = self.cfg
        return {"prompt": cfg.prompt, "texture_res": cfg.texture_res, "source": self.subject.source}
