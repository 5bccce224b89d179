"""Text to 3D on our NeRF, DreamFusion's recipe as threestudio runs it: a hash-grid field with a
density blob to start from and coarse-to-fine hash levels, albedo / Lambertian / textureless
shading under a random light (normals from the density), a learned environment or random solid
backgrounds, orientation and sparsity losses. The field, occupancy grid and marcher are the
reconstruction's (`engine.methods.nerf.NerfModel`)."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import nn

from engine.methods.generation import GenerationMethod
from engine.methods.nerf import NerfModel, export_mesh, make_optimizer
from engine.rendering.fields import render_field_views

log = logging.getLogger("lumen3d")

GRID_EVERY = 16  # steps between occupancy-grid updates, as in reconstruction
START_LEVELS = 8  # hash levels at the start; the rest join over the first half of the run (threestudio)


class Environment(nn.Module):
    """A learned background: colour as a small network of the view direction (threestudio's
    neural environment map)."""

    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(9, 32), nn.ReLU(), nn.Linear(32, 3))

    def forward(self, dirs):
        from scenes.nerf import sh_encode

        return torch.sigmoid(self.mlp(sh_encode(dirs, 3)))


class TextToNerf(GenerationMethod):
    kind = "text-nerf"

    def __init__(self, cfg, device: str = "cpu", dataset=None):
        from scenes.nerf import FieldConfig

        super().__init__(cfg, device)
        field_cfg = FieldConfig(log2_table=cfg.log2_table, sh_degree=1, blob_density=cfg.blob_density,
                                blob_radius=cfg.blob_radius)
        # renders after training show the display background (grey for a grey-trained run), as Gaussians do
        self.model = NerfModel.build([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], False, field_cfg, cfg.grid_res,
                                     self.background.tolist(), seed=cfg.seed, march_steps=cfg.march_steps).to(device)
        self.opt = make_optimizer(self.model.field, cfg.lr)
        self.env = Environment().to(device)
        if cfg.background == "learned":
            self.opt.add_param_group({"params": list(self.env.parameters()), "lr": 1e-3, "eps": 1e-15})
        self.shading_counts = {"albedo": 0, "lambertian": 0, "textureless": 0}

    def prepare(self) -> None:
        from kernels._build import nerf_cpu_ops

        nerf_cpu_ops()

    def environment(self, cams):
        w, h = cams.size
        dirs = torch.cat([cams.rays(i)[1] for i in range(len(cams))])
        return self.env(dirs).reshape(len(cams), h, w, 3)

    def pick_shading(self, fraction: float) -> str:
        cfg = self.cfg
        if fraction < cfg.shading_start:
            return "albedo"
        u = float(torch.rand((), generator=self.gen))
        return "albedo" if u < cfg.albedo_ratio else "textureless" if u < cfg.albedo_ratio + cfg.textureless_ratio \
            else "lambertian"

    def light_directions(self, views) -> torch.Tensor:
        """Towards a light near each camera (DreamFusion: around the camera's position)."""
        eye = views.cameras.c2w[:, :3, 3].float()
        jitter = torch.randn(len(eye), 3, generator=self.gen).to(eye) * 0.5 * eye.norm(dim=1, keepdim=True)
        pos = eye + jitter
        return pos / pos.norm(dim=1, keepdim=True).clamp_min(1e-9)

    def render_views(self, views, fraction: float):
        cfg, m = self.cfg, self.model
        shading = self.pick_shading(fraction)
        self.shading_counts[shading] += 1
        out = render_field_views(m.field, m.grid, views.cameras, m.dt, views.background, shading,
                                 self.light_directions(views), normal_eps=2.0 / cfg.grid_res / 4)
        extra = {"samples": out["samples"]}
        self.regularisers = {"sparsity": ((out["opacity"] ** 2 + 0.01).sqrt()).mean()}
        if "orient" in out:
            self.regularisers["orient"] = out["orient"]
        return out["rgb"], extra

    def train_step(self, step: int, fraction) -> dict:
        cfg, m = self.cfg, self.model
        f = fraction(step - 1)
        levels = m.field.cfg.levels
        m.field.active_levels = min(levels, START_LEVELS + math.floor((levels - START_LEVELS) * min(1.0, 2 * f)))
        if (step - 1) % GRID_EVERY == 0:
            g = torch.Generator().manual_seed(cfg.seed * 100003 + step)
            m.grid.update(m.field.density, step - 1, g, cells_per_update=m.grid.density.numel() // 4)
        views = self.sample_views(cfg.render_size)
        loss_sds, scalars = self.guide(views, f)
        lam_orient = cfg.lambda_orient[0] + (cfg.lambda_orient[1] - cfg.lambda_orient[0]) * f
        loss = loss_sds + cfg.lambda_sparsity * self.regularisers["sparsity"]
        if "orient" in self.regularisers:
            loss = loss + lam_orient * self.regularisers["orient"]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach(), "sds": loss_sds.detach(), **scalars,
                **{k: v.detach() for k, v in self.regularisers.items()}, "levels": m.field.active_levels}

    def state_dict(self) -> dict:
        return {"field": self.model.field.state_dict(), "grid": self.model.grid_state(),
                "optimizer": self.opt.state_dict(), "env": self.env.state_dict(), "generator": self.gen.get_state(),
                "guidance": self.guidance.state_dict(), "shading": dict(self.shading_counts)}

    def load_state_dict(self, d: dict, source: Path) -> None:
        self.model.field.load_state_dict(d["field"])
        self.model.load_grid(d["grid"])
        self.opt.load_state_dict(d["optimizer"])
        self.env.load_state_dict(d["env"])
        self.gen.set_state(d["generator"])
        self.guidance.load_state_dict(d["guidance"])
        self.shading_counts = dict(d["shading"])

    def meta(self) -> dict:
        return {**self.model.meta(), "prompt": self.cfg.prompt}

    def render(self, camera):
        self.model.field.active_levels = self.model.field.cfg.levels
        return self.model.render(camera)

    def export(self, run) -> dict:
        from engine.errors import InputError

        if not self.cfg.mesh_resolution:
            return {}
        try:
            return {"mesh": export_mesh(self.model, run.path("exports", "mesh.ply"), self.cfg.mesh_resolution,
                                        self.cfg.mesh_threshold)}
        except InputError as e:
            log.warning("no mesh: %s", e)
            return {}

    def summary(self, train_seconds: float) -> dict:
        return {**super().summary(train_seconds), "shading_steps": self.shading_counts,
                "occupancy": float(self.model.grid.bits.float().mean())}

    @classmethod
    def export_checkpoint(cls, ckpt: dict, source: Path, fmt: str, out: Path | None, options) -> str:
        from engine.methods.nerf import Nerf

        return Nerf.export_checkpoint(ckpt, source, fmt, out, options)
