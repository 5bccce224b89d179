"""NeRF training pieces (instant-NGP recipe on our kernels): rays of a dataset's photos, the optimiser,
and the step loop with occupancy-grid updates. The `lumen3d train nerf` job (checkpoints, evaluation,
renders, mesh export) is built on these.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import Tensor

from scenes.nerf import OccupancyGrid, RadianceField, render_rays


def frame_rays(frame) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre rays of a frame (OpenCV camera axes): origins and unit directions (H·W, 3)."""
    K = frame.intrinsics
    u, v = np.meshgrid(np.arange(K.width) + 0.5, np.arange(K.height) + 0.5)
    d = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], -1).reshape(-1, 3) @ frame.c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.broadcast_to(frame.c2w[:3, 3], d.shape).copy(), d


def composited(img: np.ndarray, background) -> np.ndarray:
    """RGB(A) float image → RGB over the background."""
    if img.shape[-1] == 4:
        return img[..., :3] * img[..., 3:] + (1 - img[..., 3:]) * np.asarray(background, np.float32)
    return img


def dataset_rays(scene, indices) -> tuple[Tensor, Tensor, Tensor]:
    """All rays and colours of the frames `indices`: origins, directions, rgb (N, 3) float32."""
    O, D, C = [], [], []
    for i in indices:
        o, d = frame_rays(scene.frames[i])
        O.append(o)
        D.append(d)
        C.append(composited(scene.image_rgba(i), scene.background).reshape(-1, 3))
    f32 = lambda a: torch.as_tensor(np.concatenate(a), dtype=torch.float32)  # noqa: E731
    return f32(O), f32(D), f32(C)


def make_optimizer(field: RadianceField, lr: float = 1e-2) -> torch.optim.Adam:
    """instant-NGP's Adam: β = (0.9, 0.99), ε = 1e-15 on the table, a little weight decay on the MLPs."""
    mlps = list(field.density_mlp.parameters()) + list(field.colour_mlp.parameters())
    return torch.optim.Adam([{"params": [field.table], "eps": 1e-15},
                             {"params": mlps, "weight_decay": 1e-6, "eps": 1e-15}], lr=lr, betas=(0.9, 0.99))


def train_steps(field: RadianceField, grid: OccupancyGrid, opt, rays: tuple[Tensor, Tensor, Tensor], steps: int,
                batch: int, dt: float, background: Tensor, near: float = 0.05, seed: int = 0, start: int = 0,
                on_step=None, cone: float = 0.0) -> dict:
    """`steps` optimiser steps of `batch` random rays (MSE on colour); the grid is refreshed every 16 steps.
    Returns timings per stage and the last loss."""
    O, D, C = rays
    g = torch.Generator().manual_seed(seed)
    times = {"grid": 0.0, "forward": 0.0, "backward": 0.0}
    loss = torch.tensor(float("nan"))
    samples = 0
    for step in range(start, start + steps):
        if step % 16 == 0:
            t = time.perf_counter()
            grid.update(field.density, step, g, cells_per_update=grid.density.numel() // 4)
            times["grid"] += time.perf_counter() - t
        idx = torch.randint(0, len(O), (batch,), generator=g)
        t = time.perf_counter()
        out = render_rays(field, grid, O[idx], D[idx], torch.full((batch,), near), torch.full((batch,), 1e4), dt,
                          background, cone)
        loss = ((out["rgb"] - C[idx]) ** 2).mean()
        times["forward"] += time.perf_counter() - t
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times["backward"] += time.perf_counter() - t
        samples += out["samples"]
        if on_step is not None:
            on_step(step, float(loss.detach()))
    return {"times": times, "loss": float(loss.detach()), "samples_per_ray": samples / max(steps * batch, 1)}


@torch.no_grad()
def render_image(field: RadianceField, grid: OccupancyGrid, frame, dt: float, background: Tensor,
                 chunk: int = 8192, cone: float = 0.0) -> np.ndarray:
    o, d = frame_rays(frame)
    o, d = torch.as_tensor(o, dtype=torch.float32), torch.as_tensor(d, dtype=torch.float32)
    out = []
    for k in range(0, len(o), chunk):
        n = len(o[k:k + chunk])
        out.append(render_rays(field, grid, o[k:k + chunk], d[k:k + chunk], torch.full((n,), 0.05),
                               torch.full((n,), 1e4), dt, background, cone)["rgb"])
    K = frame.intrinsics
    return torch.cat(out).reshape(K.height, K.width, 3).numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return -10 * math.log10(max(float(((a - b) ** 2).mean()), 1e-12))


# --- the job ----------------------------------------------------------------------------------------------
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Literal, Optional  # noqa: E402

import tyro  # noqa: E402

from engine.runs import RunOptions  # noqa: E402


@dataclass(kw_only=True)
class TrainNerfJob(RunOptions):
    """Train an instant-NGP-style NeRF (hash grid, occupancy-grid marching) on our kernels."""

    data: tyro.conf.Positional[Path]
    """Dataset: Blender, nerfstudio, COLMAP or LLFF."""
    format: Literal["auto", "blender", "nerfstudio", "colmap", "llff"] = "auto"
    downscale: Optional[float] = None
    max_steps: int = 2000
    max_minutes: Optional[float] = None
    samples_per_step: int = 1 << 16
    """Target samples per step: the number of rays adapts to how many samples each ray needs."""
    max_rays: int = 8192
    lr: float = 1e-2
    log2_table: int = 17
    grid_res: int = 128
    checkpoint_every: int = 250
    resume: bool = False
    eval_views: Optional[int] = None
    """Evaluate on this many test views (evenly spaced; default all)."""

    def run(self):
        from engine.runs import start_run

        if not self.data.exists():
            from engine.errors import InputError

            raise InputError(self.data, "dataset not found")
        run = start_run("train-nerf", self, inputs=[self.data], resume=self.resume)
        return train_nerf(self, run)


def scene_box(scene) -> tuple[list[float], list[float], bool]:
    """Centre, half-size and boundedness: Blender scenes live in ±1.5; captures are unbounded around
    their cameras' focus."""
    if scene.format == "blender":
        return [0.0, 0.0, 0.0], [1.5, 1.5, 1.5], False
    from engine.train_gaussians import focus_point

    c2ws = np.stack([f.c2w for f in scene.frames])
    centre = focus_point(c2ws)
    radius = float(np.linalg.norm(c2ws[:, :3, 3] - centre, axis=1).max())
    return centre.tolist(), [radius] * 3, True


def train_nerf(cfg: TrainNerfJob, run) -> dict:
    import logging
    import resource

    from engine.data import load_scene
    from engine.io import atomic_path, load_checkpoint
    from engine.losses import ssim
    from engine.progress import progress, track
    from scenes.nerf import FieldConfig, default_step

    log = logging.getLogger("lumen3d")
    scene = load_scene(cfg.data, cfg.format, cfg.downscale)
    centre, half, unbounded = scene_box(scene)
    field = RadianceField(centre, half, unbounded, FieldConfig(log2_table=cfg.log2_table), seed=cfg.seed)
    dt = default_step(field.box_half)
    grid = OccupancyGrid(*field.grid_box(), dt, cascades=5 if unbounded else 1, res=cfg.grid_res)
    cone = 1 / 256 if unbounded else 0.0
    opt = make_optimizer(field, cfg.lr)
    bg = torch.tensor(scene.background, dtype=torch.float32)
    rays = dataset_rays(scene, scene.splits["train"])
    state = {"step": 0, "train_seconds": 0.0, "rays": 0, "batch": 1024}
    ckpt = run.path("checkpoints", "last.pt")
    if cfg.resume and ckpt.is_file():
        d = load_checkpoint(ckpt)
        field.load_state_dict(d["params"])
        opt.load_state_dict(d["optimizer"])
        grid.density, grid.bits = d["grid_density"], d["grid_bits"]
        state.update({k: d["state"][k] for k in state})
        log.info("resumed from %s at step %d", ckpt, state["step"])

    def save():
        with atomic_path(ckpt) as tmp:
            torch.save({"params": field.state_dict(), "optimizer": opt.state_dict(), "grid_density": grid.density,
                        "grid_bits": grid.bits, "state": state}, tmp)

    deadline = None if cfg.max_minutes is None else cfg.max_minutes * 60
    times = {"grid": 0.0, "forward": 0.0, "backward": 0.0}
    with progress() as bar:
        task = bar.add_task("training", total=cfg.max_steps, completed=state["step"])
        while state["step"] < cfg.max_steps and (deadline is None or state["train_seconds"] < deadline):
            t = time.perf_counter()
            info = train_steps(field, grid, opt, rays, 1, state["batch"], dt, bg, seed=cfg.seed * 100003 + state["step"],
                               start=state["step"], cone=cone)
            state["train_seconds"] += time.perf_counter() - t
            state["rays"] += state["batch"]
            for k in times:
                times[k] += info["times"][k]
            # the next batch: as many rays as keep the samples per step near the target
            per_ray = max(info["samples_per_ray"], 1.0)
            state["batch"] = int(min(cfg.max_rays, max(256, cfg.samples_per_step / per_ray)))
            state["step"] += 1
            if state["step"] % 10 == 0:
                bar.update(task, completed=state["step"], description=f"training  loss {info['loss']:.4f}  "
                           f"PSNR {-10 * math.log10(max(info['loss'], 1e-12)):.2f}  rays {state['batch']}")
            if state["step"] % cfg.checkpoint_every == 0:
                save()
    save()
    idx = scene.splits.get("test") or []
    if cfg.eval_views and len(idx) > cfg.eval_views:
        idx = [idx[round(i * (len(idx) - 1) / max(cfg.eval_views - 1, 1))] for i in range(cfg.eval_views)]
    ps, ss = [], []
    from PIL import Image

    for n, i in enumerate(track(idx, "evaluating test views")):
        gt = composited(scene.image_rgba(i), scene.background)
        img = np.clip(render_image(field, grid, scene.frames[i], dt, bg, cone=cone), 0, 1)
        ps.append(psnr(img, gt))
        ss.append(float(ssim(torch.from_numpy(img).float(), torch.from_numpy(gt).float())))
        with atomic_path(run.path("renders", "test", f"{n:04d}.png")) as tmp:
            Image.fromarray((img * 255).round().astype(np.uint8)).save(tmp, format="PNG")
    metrics = {"test": {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "views": len(idx)} if idx else {},
               "steps": state["step"], "train_seconds": state["train_seconds"],
               "rays_per_second": state["rays"] / max(state["train_seconds"], 1e-9),
               "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "profile_seconds": times, "occupancy": float(grid.bits.float().mean()),
               "bounded": not unbounded}
    run.write_metrics(**metrics)
    if idx:
        log.info("test PSNR %.2f dB, SSIM %.4f over %d views; %d steps in %.0f s (%.0f rays/s)", metrics["test"]["psnr"],
                 metrics["test"]["ssim"], len(idx), state["step"], state["train_seconds"], metrics["rays_per_second"])
    return metrics
