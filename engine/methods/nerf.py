"""NeRF in the instant-NGP recipe on our kernels: a hash-grid field, the occupancy grid, adaptive
rays per step, nerfacc's learning-rate decay, and a marching-cubes mesh export."""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from engine.cameras import Cameras, focus_point
from engine.errors import InputError
from engine.losses import MSELoss
from engine.methods.reconstruction import ReconstructionMethod
from engine.rendering.background import RandomBackground, composite
from engine.rendering.fields import NEAR, render_field
from scenes.nerf import MARCH_STEPS, OccupancyGrid, RadianceField, default_step, render_rays

log = logging.getLogger("lumen3d")
MSE = MSELoss()


def dataset_rays(scene, indices, keep_alpha: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """All rays and colours of the frames `indices`: origins, directions, rgb (N, 3) float32 over the
    scene's background, or rgba (N, 4) straight from RGBA photos with `keep_alpha`."""
    O, D, C = [], [], []
    for i in indices:
        o, d = Cameras.from_frames([scene.frames[i]]).rays(0)
        O.append(o)
        D.append(d)
        img = scene.image_rgba(i)
        C.append(torch.from_numpy(img.reshape(-1, 4) if keep_alpha and img.shape[-1] == 4
                                  else composite(img, scene.background).reshape(-1, 3)))
    return torch.cat(O), torch.cat(D), torch.cat(C).float()


def make_optimizer(field: RadianceField, lr: float = 1e-2) -> torch.optim.Adam:
    """instant-NGP's Adam: β = (0.9, 0.99), ε = 1e-15 on the table, a little weight decay on the MLPs;
    fused (one pass over each tensor)."""
    mlps = list(field.density_mlp.parameters()) + list(field.colour_mlp.parameters())
    return torch.optim.Adam([{"params": [field.table], "eps": 1e-15},
                             {"params": mlps, "weight_decay": 1e-6, "eps": 1e-15}], lr=lr, betas=(0.9, 0.99),
                            fused=True)


def train_steps(field: RadianceField, grid: OccupancyGrid, opt, rays: tuple[Tensor, Tensor, Tensor], steps: int,
                batch: int, dt: float, background: Tensor, near: float = NEAR, seed: int = 0, start: int = 0,
                on_step=None, cone: float = 0.0, group=None) -> dict:
    """`steps` optimiser steps of `batch` random rays (MSE on colour); the grid is refreshed every 16 steps.
    With RGBA colours (N, 4) each ray gets a random background, on the target and the render alike, so
    that the field cannot paint the background into the scene. Returns timings per stage and the last loss.

    On several processes (`group`, `engine.training.distributed`) each renders `batch` rays: every
    process draws the whole step's rays and backgrounds and takes its own share, the loss is the mean
    over all of them and the gradients are summed, so the step is that of one process with all the
    rays; the grid's cells are evaluated in shares too."""
    from engine.training.distributed import Processes

    group = group or Processes()
    O, D, C = rays
    g = torch.Generator().manual_seed(seed)
    random_bg = RandomBackground(O.device)
    times = {"grid": 0.0, "forward": 0.0, "backward": 0.0, "exchange": 0.0}
    loss = torch.tensor(float("nan"))
    samples = 0.0
    every = batch * group.world
    mine = slice(group.rank * batch, (group.rank + 1) * batch)
    params = [p for grp in opt.param_groups for p in grp["params"]]
    for step in range(start, start + steps):
        if step % 16 == 0:
            t = time.perf_counter()
            grid.update(field.density, step, g, cells_per_update=grid.density.numel() // 4,
                        part=(group.rank, group.world), reduce=lambda x: group.all_reduce([x]))
            times["grid"] += time.perf_counter() - t
        idx = torch.randint(0, len(O), (every,), generator=g).to(O.device)[mine]
        t = time.perf_counter()
        target = C[idx]
        bg = background
        if target.shape[1] == 4:
            bg = random_bg.sample((every,), g)[mine]
            target = composite(target, bg)
        out = render_rays(field, grid, O[idx], D[idx], torch.full((batch,), near, device=O.device),
                          torch.full((batch,), 1e4, device=O.device), dt, bg, cone)
        loss = MSE(out["rgb"], target) / group.world
        times["forward"] += time.perf_counter() - t
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        times["backward"] += time.perf_counter() - t
        loss = loss.detach()
        count = torch.tensor(float(out["samples"]), dtype=torch.float64)
        if group.world > 1:
            t = time.perf_counter()
            group.all_reduce(group.gradients(params) + [loss, count])
            times["exchange"] += time.perf_counter() - t
        t = time.perf_counter()
        opt.step()
        times["backward"] += time.perf_counter() - t
        samples += float(count)
        if on_step is not None:
            on_step(step, float(loss))
    return {"times": times, "loss": float(loss), "samples_per_ray": samples / max(steps * every, 1)}


def scene_box(scene) -> tuple[list[float], list[float], bool]:
    """Centre, half-size and boundedness: Blender scenes live in ±1.5; a dataset that states its box
    (instant-ngp's aabb_scale, scale, offset) gets it; other captures are unbounded around their
    cameras' focus."""
    box = scene.extra.get("scene_box")
    if box is not None:
        return list(box["centre"]), list(box["half"]), bool(box["unbounded"])
    if scene.format == "blender":
        return [0.0, 0.0, 0.0], [1.5, 1.5, 1.5], False
    c2ws = np.stack([f.c2w for f in scene.frames])
    centre = focus_point(c2ws)
    radius = float(np.linalg.norm(c2ws[:, :3, 3] - centre, axis=1).max())
    return centre.tolist(), [radius] * 3, True


def lr_factor(progress: float) -> float:
    """nerfacc's instant-NGP decay on the budget's progress in [0, 1]: ×0.33 at 1/2, 3/4 and 9/10.
    (No warm-up: short CPU budgets cannot spare the steps.)"""
    return 0.33 ** sum(progress >= m for m in (0.5, 0.75, 0.9))


@dataclass
class NerfModel:
    """A trained NeRF ready to render: the field, its grid, the marching step, the background."""

    field: RadianceField
    grid: OccupancyGrid
    dt: float
    cone: float
    background: Tensor
    march_steps: int = MARCH_STEPS  # dt's steps across the box's diagonal

    @staticmethod
    def build(centre, half, unbounded: bool, cfg, grid_res: int, background, seed: int = 0,
              march_steps: int = MARCH_STEPS) -> "NerfModel":
        field = RadianceField(centre, half, unbounded, cfg, seed=seed)
        dt = default_step(field.box_half, march_steps)
        grid = OccupancyGrid(*field.grid_box(), dt, cascades=5 if unbounded else 1, res=grid_res)
        return NerfModel(field, grid, dt, 1 / 256 if unbounded else 0.0,
                         torch.as_tensor(background, dtype=torch.float32), march_steps)

    def to(self, device) -> "NerfModel":
        self.field.to(device)
        self.grid.to(device)
        self.background = self.background.to(device)
        return self

    def meta(self) -> dict:
        f = self.field
        return {"centre": f.box_centre.tolist(), "half": f.box_half.tolist(), "unbounded": f.unbounded,
                "field": asdict(f.cfg), "grid_res": self.grid.res, "background": self.background.tolist(),
                "march_steps": self.march_steps}

    @staticmethod
    def from_checkpoint(ckpt: dict, source: Path) -> "NerfModel":
        from scenes.nerf import FieldConfig

        m, state = ckpt["meta"], ckpt["state"]["method"]
        try:
            model = NerfModel.build(m["centre"], m["half"], m["unbounded"], FieldConfig(**m["field"]), m["grid_res"],
                                    m["background"], march_steps=m.get("march_steps", MARCH_STEPS))
            model.field.load_state_dict(state["field"])
            model.load_grid(state["grid"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise InputError(source, f"the NeRF checkpoint does not describe its field ({str(e).splitlines()[0]})")
        return model

    def grid_state(self) -> dict:
        """What the grid learned (its geometry follows from the meta; its visibility from the cameras)."""
        return {"density": self.grid.density, "bits": self.grid.bits}

    def load_grid(self, d: dict) -> None:
        if d["density"].shape != self.grid.density.shape or d["bits"].shape != self.grid.bits.shape:
            raise RuntimeError(f"occupancy grid of shape {tuple(d['density'].shape)}, expected "
                               f"{tuple(self.grid.density.shape)}")
        self.grid.density, self.grid.bits = d["density"].to(self.grid.density), d["bits"].to(self.grid.bits)

    def render(self, camera: Cameras):
        return render_field(self.field, self.grid, camera, self.dt, self.background, self.cone)


def export_mesh(model: NerfModel, path: Path, resolution: int, threshold: float, texture_size: int = 0) -> dict:
    """exports/mesh.ply (or any suffix trimesh writes): marching cubes on the density, vertex colours.
    With texture_size > 0 and an .obj or .glb path: UVs by xatlas and the field's colour baked into a
    texture_size² texture (each texel seen from outside along the surface normal) instead."""
    from engine.progress import progress
    from scenes.nerf_mesh import field_mesh, save_mesh

    with progress() as bar:
        task = bar.add_task("meshing", total=resolution)
        mesh = field_mesh(model.field, model.grid, resolution, threshold, progress=lambda: bar.advance(task))
    v = mesh["vertices"]
    if not len(mesh["faces"]):
        raise InputError(path, f"the field has no surface above density {threshold:g}; lower --mesh-threshold")
    info = {"path": str(path), "vertices": len(v), "faces": len(mesh["faces"]), "resolution": resolution,
            "threshold": threshold, "bounds": [v.min(0).tolist(), v.max(0).tolist()] if len(v) else None}
    if texture_size > 0 and path.suffix.lower() in (".obj", ".glb"):
        info.update(bake_field_texture(model, mesh, path, texture_size))
    else:
        save_mesh(mesh, path)
    return info


def bake_field_texture(model: NerfModel, mesh: dict, path: Path, size: int) -> dict:
    """Unwrap a field's mesh (xatlas) and bake the field's colour into a UV texture; write OBJ+MTL+PNG
    or GLB with a pbrMetallicRoughness material."""
    from engine.rendering.mesh import bake_function
    from scenes.mesh_files import write_glb, write_obj
    from scenes.textured_mesh import Material, TexturedMesh, unwrap, uv_overlap

    t0 = time.perf_counter()
    log.info("unwrapping %d faces with xatlas", len(mesh["faces"]))
    tm = unwrap(TexturedMesh(torch.as_tensor(mesh["vertices"], dtype=torch.float32),
                             torch.as_tensor(mesh["faces"], dtype=torch.int64),
                             normals=torch.as_tensor(mesh["normals"], dtype=torch.float32)))
    t1 = time.perf_counter()
    field = model.field
    device = next(field.parameters()).device
    tex = bake_function(tm, lambda p, n: field(p.to(device), -n.to(device))[1].clamp(0, 1), size)
    tm = tm.with_material(Material(name="baked", base_color=tex, roughness=1.0, metallic=0.0))
    (write_glb if path.suffix.lower() == ".glb" else write_obj)(tm, path)
    covered, twice = uv_overlap(tm, 256)
    return {"texture_size": size, "uv_vertices": len(tm.vertices), "uv_coverage": covered, "uv_overlap": twice,
            "unwrap_seconds": t1 - t0, "bake_seconds": time.perf_counter() - t1}


class Nerf(ReconstructionMethod):
    kind = "nerf"

    def __init__(self, cfg, device: str = "cpu", dataset=None, group=None):
        from scenes.nerf import FieldConfig

        super().__init__(cfg, dataset, group)
        self.device = device
        scene = self.scene
        centre, half, self.unbounded = scene_box(scene)
        self.model = NerfModel.build(centre, half, self.unbounded, FieldConfig(log2_table=cfg.log2_table),
                                     cfg.grid_res, scene.background, seed=cfg.seed).to(device)
        self.background = self.model.background
        self.opt = make_optimizer(self.model.field, cfg.lr)
        frames = [scene.frames[i] for i in self.train_idx]
        near = 0.9 * float(scene.near_far[self.train_idx].min()) if scene.near_far is not None else 0.0
        visible = self.model.grid.mark_invisible(self.train_c2ws, [f.intrinsics for f in frames], near)
        log.info("occupancy grid: %.1f%% of its cells are seen by a training view", 100 * visible)
        self.rays = tuple(t.to(device) for t in dataset_rays(scene, self.train_idx, keep_alpha=cfg.random_background))
        self.rays_seen, self.batch = 0, min(1024, cfg.max_rays)  # rays per step on each process
        self.times = {"grid": 0.0, "forward": 0.0, "backward": 0.0, "exchange": 0.0}

    def prepare(self) -> None:
        from kernels._build import nerf_cpu_ops

        nerf_cpu_ops()

    def train_step(self, step: int, fraction) -> dict:
        cfg, m = self.cfg, self.model
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(fraction(step - 1))
        # a fresh generator per step from the seed and the step: a resumed run draws the same rays
        info = train_steps(m.field, m.grid, self.opt, self.rays, 1, self.batch, m.dt, m.background,
                           seed=cfg.seed * 100003 + step - 1, start=step - 1, cone=m.cone, group=self.group)
        self.rays_seen += self.batch * self.group.world
        for k in self.times:
            self.times[k] += info["times"][k]
        rays = self.batch * self.group.world
        # the next batch: as many rays as keep the samples per step near the target
        per_ray = max(info["samples_per_ray"], 1.0)
        self.batch = int(min(cfg.max_rays, max(256, cfg.samples_per_step / per_ray)))
        return {"loss": info["loss"], "psnr": -10 * np.log10(max(info["loss"], 1e-12)), "rays": rays,
                "samples_per_ray": info["samples_per_ray"], "lr": self.opt.param_groups[0]["lr"]}

    def describe(self, s: dict) -> str:
        return f"loss {s['loss']:.4f}  PSNR {s['psnr']:.2f}  rays {self.batch}"

    def state_dict(self) -> dict:
        return {"field": self.model.field.state_dict(), "grid": self.model.grid_state(),
                "optimizer": self.opt.state_dict(), "rays": self.rays_seen, "batch": self.batch,
                "times": dict(self.times)}

    def load_state_dict(self, d: dict, source: Path) -> None:
        self.model.field.load_state_dict(d["field"])
        self.model.load_grid(d["grid"])
        self.opt.load_state_dict(d["optimizer"])
        self.rays_seen, self.batch = int(d["rays"]), int(d["batch"])
        self.times = {**self.times, **d["times"]}

    def meta(self) -> dict:
        return self.model.meta()

    def render(self, camera):
        return self.model.render(camera)

    def export(self, run) -> dict:
        if self.cfg.mesh_resolution <= 0:
            return {}
        try:
            return {"mesh": export_mesh(self.model, run.path("exports", "mesh.ply"), self.cfg.mesh_resolution,
                                        self.cfg.mesh_threshold)}
        except InputError as e:  # an untrained or empty field: the run's other results still count
            log.warning("no mesh: %s", e)
            return {}

    def summary(self, train_seconds: float) -> dict:
        return {"rays_per_second": self.rays_seen / max(train_seconds, 1e-9), "profile_seconds": self.times,
                "occupancy": float(self.model.grid.bits.float().mean()), "bounded": not self.unbounded}

    @classmethod
    def export_checkpoint(cls, ckpt: dict, source: Path, fmt: str, out: Path | None, options) -> str:
        out = out or source / "exports" / "mesh.ply"
        if out.suffix.lower() not in (".ply", ".obj", ".glb", ".off", ".stl"):
            raise InputError(out, "a mesh is written as .ply, .obj, .glb, .off or .stl")
        model = NerfModel.from_checkpoint(ckpt, source / "checkpoints" / "last.pt")
        info = export_mesh(model, out, options.mesh_resolution, options.mesh_threshold,
                           getattr(options, "texture_size", 0))
        tex = f", a {info['texture_size']}² texture baked from the field" if "texture_size" in info else ""
        return f"wrote {out} ({info['vertices']:,} vertices, {info['faces']:,} faces{tex})"
