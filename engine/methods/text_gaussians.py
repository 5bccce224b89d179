"""Text to 3D on Gaussians, DreamGaussian's first stage: random points in a sphere, SDS from
random views with the render size rising through ¼, ½ and all of --render-size, Inria's adaptive
density control, and exports of the Gaussians (PLY, .splat) and of a mesh of their density."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from engine.errors import InputError
from engine.methods.generation import GenerationMethod
from engine.rendering.gaussians import render_gaussians
from engine.strategies import gaussian_adam

log = logging.getLogger("lumen3d")

# DreamGaussian's learning rates (position decays exponentially to its final value over the run)
LRS = {"means": 1e-3, "log_scales": 5e-3, "quats": 5e-3, "opacity_logits": 5e-2, "sh_dc": 1e-2, "sh_rest": 5e-4}
LR_MEANS_FINAL = 2e-5
EXTENT = 4.0  # DreamGaussian's camera extent: Gaussians above 1% of it split rather than clone


def sphere_points(n: int, radius: float, generator: torch.Generator) -> torch.Tensor:
    """n points uniform in a ball."""
    d = torch.randn(n, 3, generator=generator)
    d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-9)
    return d * radius * torch.rand(n, 1, generator=generator) ** (1 / 3)


class TextToGaussians(GenerationMethod):
    kind = "text-gaussians"

    def __init__(self, cfg, device: str = "cpu", dataset=None):
        from engine.strategies import ADCStrategy
        from scenes import gaussians as G

        super().__init__(cfg, device)
        xyz = sphere_points(cfg.init_points, 0.5, self.gen)
        params = G.from_points(xyz, torch.rand(cfg.init_points, 3, generator=self.gen), 0, 0.1)
        self.params = {k: torch.nn.Parameter(v.detach().to(device)) for k, v in params.items()}
        self.optimizers = {k: gaussian_adam(p, LRS[k]) for k, p in self.params.items()}
        steps = cfg.max_steps
        # DreamGaussian refines every 100 steps from step 100 on, with its 0.01 threshold for SDS's
        # larger gradients; a short run refines from its first fifth
        self.strategy = ADCStrategy(grad_threshold=cfg.grad_threshold, refine_start=min(100, steps // 5),
                                    refine_stop=max(int(0.8 * steps), 1), refine_every=min(100, max(steps // 5, 1)),
                                    reset_every=10 ** 9, prune_opacity=0.01)
        self.refinements: list[dict] = []

    def prepare(self) -> None:
        from kernels._build import cpu_ops

        cpu_ops()

    def size_at(self, fraction: float) -> int:
        """DreamGaussian's rising resolution: ¼ of the size for the first 30%, ½ until 60%."""
        s = self.cfg.render_size
        return max(16, s // 4 if fraction < 0.3 else s // 2 if fraction < 0.6 else s)

    def render_views(self, views, fraction: float):
        images, self.infos = [], []
        for i in range(len(views.cameras)):
            bg = views.background[i, 0, 0]  # solid per view (a learned environment is a NeRF's)
            out = render_gaussians(self.params, views.cameras[i], bg, 0)
            self.strategy.pre_backward(0, out.info)
            self.infos.append(out.info)
            images.append(out.rgb)
        return torch.stack(images), {}

    def train_step(self, step: int, fraction) -> dict:
        f = fraction(step - 1)
        lr = math.exp((1 - f) * math.log(LRS["means"]) + f * math.log(LR_MEANS_FINAL))
        for g in self.optimizers["means"].param_groups:
            g["lr"] = lr
        views = self.sample_views(self.size_at(f))
        loss, scalars = self.guide(views, f)
        loss.backward()
        seen = self.strategy.statistics(step, self.infos)  # every view of the step counts towards densification
        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        stats = self.strategy.post_backward(step, seen, self.params, self.optimizers, EXTENT, generator=self.gen)
        self.infos = []
        if stats:
            self.refinements.append({"step": step, **stats})
        return {"loss": loss.detach(), **scalars, "gaussians": len(self.params["means"]),
                "size": views.cameras.size[0]}

    def describe(self, s: dict) -> str:
        return f"loss {s['loss']:.4g}  t {s['t']:.3f}  N {int(s['gaussians']):,}  {int(s['size'])}px"

    def state_dict(self) -> dict:
        return {"params": {k: v.detach().clone() for k, v in self.params.items()},
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "strategy": self.strategy.state_dict(), "generator": self.gen.get_state(),
                "guidance": self.guidance.state_dict(), "refinements": self.refinements[-20:]}

    def load_state_dict(self, d: dict, source: Path) -> None:
        for k in self.params:
            self.params[k] = torch.nn.Parameter(d["params"][k].clone().to(self.device))
            opt = gaussian_adam(self.params[k], LRS[k])
            opt.load_state_dict(d["optimizers"][k])
            self.optimizers[k] = opt
        self.strategy.load_state_dict(d["strategy"])
        self.gen.set_state(d["generator"])
        self.guidance.load_state_dict(d["guidance"])
        self.refinements = list(d.get("refinements", []))

    def meta(self) -> dict:
        return {"sh_degree": 0, "antialiased": False, "background": self.background.tolist(),
                "prompt": self.cfg.prompt}

    @torch.no_grad()
    def render(self, camera):
        return render_gaussians(self.params, camera, self.background, 0)

    def snapshot(self) -> dict:
        return self.params

    def export(self, run) -> dict:
        from engine.methods.gaussians import export_splats

        out = export_splats(self.params, run)
        if self.cfg.mesh_resolution:
            info = export_gaussians_mesh(self.params, run.path("exports", "mesh.ply"), self.cfg.mesh_resolution)
            if info:
                out["mesh"] = info
        return out

    def summary(self, train_seconds: float) -> dict:
        return {**super().summary(train_seconds), "num_gaussians": len(self.params["means"]),
                "refinements": self.refinements[-20:]}

    @classmethod
    def view_content(cls, ckpt: dict, source: Path) -> dict:
        from engine.methods.gaussians import GaussianSplatting

        return GaussianSplatting.view_content(ckpt, source)

    @classmethod
    def export_checkpoint(cls, ckpt: dict, source: Path, fmt: str, out: Path | None, options) -> str:
        from engine.methods.gaussians import GaussianSplatting
        from scenes.gaussians import check_params

        if fmt != "mesh":
            return GaussianSplatting.export_checkpoint(ckpt, source, fmt, out, options)
        params = check_params(ckpt["state"]["method"].get("params"), source / "checkpoints" / "last.pt")
        out = out or source / "exports" / "mesh.ply"
        info = export_gaussians_mesh(params, out, options.mesh_resolution)
        if not info:
            raise InputError(source, "the Gaussians' density never reaches the surface level: no mesh")
        return f"wrote {out} ({info['vertices']:,} vertices, {info['faces']:,} faces)"


def export_gaussians_mesh(params: dict, path: Path, resolution: int) -> dict | None:
    from scenes.gaussian_mesh import gaussians_mesh
    from scenes.nerf_mesh import save_mesh

    mesh = gaussians_mesh(params, resolution)
    if not len(mesh["faces"]):
        log.warning("no mesh: the Gaussians' density stays below %g (at most %.3g)", mesh["level"],
                    mesh["max_density"])
        return None
    save_mesh(mesh, path)
    return {"path": str(path), "vertices": len(mesh["vertices"]), "faces": len(mesh["faces"]),
            "resolution": resolution, "level": mesh["level"]}
