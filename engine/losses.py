"""Image losses and metrics: L1, SSIM (Gaussian 11×11 window, σ 1.5, as 3DGS), PSNR."""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor


WINDOW, SIGMA = 11, 1.5


@functools.lru_cache(maxsize=8)
def _gauss_1d(channels: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    x = torch.arange(WINDOW, dtype=torch.float64) - WINDOW // 2
    g = torch.exp(-x * x / (2 * SIGMA * SIGMA))
    g = (g / g.sum()).to(dtype)
    return (g.view(1, 1, WINDOW, 1).expand(channels, 1, WINDOW, 1).contiguous(),
            g.view(1, 1, 1, WINDOW).expand(channels, 1, 1, WINDOW).contiguous())


def _blur(x: Tensor) -> Tensor:
    """The 11×11 Gaussian window (zero padding) as two 1-D passes: 22 instead of 121 taps."""
    C = x.shape[1]
    gv, gh = _gauss_1d(C, x.dtype)
    x = F.conv2d(x, gv, padding=(WINDOW // 2, 0), groups=C)
    return F.conv2d(x, gh, padding=(0, WINDOW // 2), groups=C)


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """Mean SSIM of two images (H, W, C) in [0, 1]."""
    x, y = a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None]
    # the five blurs in one batched pass
    m = _blur(torch.cat([x, y, x * x, y * y, x * y], 1))
    mu_x, mu_y, exx, eyy, exy = m.chunk(5, dim=1)
    sxx, syy, sxy = exx - mu_x ** 2, eyy - mu_y ** 2, exy - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    m = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return m.mean()


def psnr(a, b) -> float:
    """PSNR in dB of an image `a` (clamped to [0, 1]) against `b`; torch tensors or numpy arrays."""
    a = a.clamp(0, 1) if isinstance(a, Tensor) else a.clip(0, 1)
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def splat_loss(render: Tensor, target: Tensor, ssim_lambda: float = 0.2) -> Tensor:
    """3DGS photometric loss: (1 − λ)·L1 + λ·(1 − SSIM)."""
    return (1 - ssim_lambda) * (render - target).abs().mean() + ssim_lambda * (1 - ssim(render, target))


class Objective:
    """A scalar loss on rendered images, the one interface of what drives optimisation:
    `objective(rgb, target) -> loss`. Reconstruction compares renders with photos; diffusion
    guidance takes the prompt (and the cameras) as its target and returns a loss whose gradient
    on the images is the score-distillation gradient."""

    def __call__(self, rgb: Tensor, target) -> Tensor:
        raise NotImplementedError


class PhotometricLoss(Objective):
    """3DGS's (1 − λ)·L1 + λ·(1 − SSIM) on an (H, W, 3) image."""

    def __init__(self, ssim_lambda: float = 0.2):
        self.ssim_lambda = ssim_lambda

    def __call__(self, rgb: Tensor, target: Tensor) -> Tensor:
        return splat_loss(rgb, target, self.ssim_lambda)


class MSELoss(Objective):
    """Mean squared error (NeRF's loss on a batch of rays)."""

    def __call__(self, rgb: Tensor, target: Tensor) -> Tensor:
        return ((rgb - target) ** 2).mean()
