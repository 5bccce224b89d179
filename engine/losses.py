"""Image losses and metrics: L1, SSIM (Gaussian 11×11 window, σ 1.5, as 3DGS), PSNR."""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor


@functools.lru_cache(maxsize=4)
def _window(channels: int, dtype: torch.dtype, size: int = 11, sigma: float = 1.5) -> Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).to(dtype).contiguous()


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """Mean SSIM of two images (H, W, C) in [0, 1]."""
    x, y = a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None]
    C = x.shape[1]
    w = _window(C, x.dtype)
    pad = w.shape[-1] // 2
    mu_x, mu_y = F.conv2d(x, w, padding=pad, groups=C), F.conv2d(y, w, padding=pad, groups=C)
    sxx = F.conv2d(x * x, w, padding=pad, groups=C) - mu_x ** 2
    syy = F.conv2d(y * y, w, padding=pad, groups=C) - mu_y ** 2
    sxy = F.conv2d(x * y, w, padding=pad, groups=C) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    m = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return m.mean()


def psnr(a: Tensor, b: Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b) ** 2).mean())
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def splat_loss(render: Tensor, target: Tensor, ssim_lambda: float = 0.2) -> Tensor:
    """3DGS photometric loss: (1 − λ)·L1 + λ·(1 − SSIM)."""
    return (1 - ssim_lambda) * (render - target).abs().mean() + ssim_lambda * (1 - ssim(render, target))
