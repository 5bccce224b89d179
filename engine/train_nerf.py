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
                on_step=None) -> dict:
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
                          background)
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
                 chunk: int = 8192) -> np.ndarray:
    o, d = frame_rays(frame)
    o, d = torch.as_tensor(o, dtype=torch.float32), torch.as_tensor(d, dtype=torch.float32)
    out = []
    for k in range(0, len(o), chunk):
        n = len(o[k:k + chunk])
        out.append(render_rays(field, grid, o[k:k + chunk], d[k:k + chunk], torch.full((n,), 0.05),
                               torch.full((n,), 1e4), dt, background)["rgb"])
    K = frame.intrinsics
    return torch.cat(out).reshape(K.height, K.width, 3).numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return -10 * math.log10(max(float(((a - b) ** 2).mean()), 1e-12))
