"""Timesteps, weightings and the SDS loss, shared by every diffusion guidance.

Conventions: `alphas_cumprod` is ᾱ_t of the model's noise schedule (T entries, t = 0 … T−1);
timestep ranges are fractions of T, as threestudio writes them (min/max_step_percent).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

Anneal = Literal["none", "linear", "sqrt", "dreamgaussian"]
Weighting = Literal["sds", "uniform", "fantasia3d"]


def scaled_linear_alphas_cumprod(steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> Tensor:
    """ᾱ_t of Stable Diffusion's "scaled_linear" β schedule (float64, (steps,))."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


class TimestepSchedule:
    """t for each image of a batch at a point of the run (`progress` in [0, 1]).

    none: t ~ U[t_range] throughout. linear / sqrt: the range moves from `t_range` to `t_final`
    linearly in progress, or in √progress (Paint-it). dreamgaussian: one deterministic t for the
    whole batch, (1 − progress)·T clipped to `t_range` (DreamGaussian's annealing).
    """

    def __init__(self, steps: int, t_range: tuple[float, float] = (0.02, 0.98), anneal: Anneal = "none",
                 t_final: tuple[float, float] | None = None):
        if not (0 <= t_range[0] <= t_range[1] <= 1):
            raise ValueError(f"timestep range must satisfy 0 <= min <= max <= 1, got {t_range}")
        self.steps, self.t_range, self.anneal = steps, t_range, anneal
        self.t_final = t_final if t_final is not None else t_range

    def bounds(self, progress: float) -> tuple[int, int]:
        """The integer range [lo, hi] t is drawn from at `progress`."""
        p = min(max(progress, 0.0), 1.0)
        if self.anneal in ("linear", "sqrt"):
            a = p if self.anneal == "linear" else math.sqrt(p)
            lo = (1 - a) * self.t_range[0] + a * self.t_final[0]
            hi = (1 - a) * self.t_range[1] + a * self.t_final[1]
        else:
            lo, hi = self.t_range
        T = self.steps
        lo_i, hi_i = int(round(lo * T)), min(int(round(hi * T)), T - 1)
        return min(lo_i, hi_i), hi_i

    def sample(self, n: int, progress: float, generator: torch.Generator | None = None) -> Tensor:
        """(n,) int64 timesteps."""
        lo, hi = self.bounds(progress)
        if self.anneal == "dreamgaussian":
            t = int(round((1 - min(max(progress, 0.0), 1.0)) * self.steps))
            return torch.full((n,), min(max(t, lo), hi), dtype=torch.long)
        return torch.randint(lo, hi + 1, (n,), generator=generator)


def weight(alphas_cumprod_t: Tensor, kind: Weighting) -> Tensor:
    """w(t) from ᾱ_t: sds 1 − ᾱ (DreamFusion), uniform 1, fantasia3d √ᾱ·(1 − ᾱ)."""
    a = alphas_cumprod_t
    if kind == "sds":
        return 1 - a
    if kind == "uniform":
        return torch.ones_like(a)
    if kind == "fantasia3d":
        return a.sqrt() * (1 - a)
    raise ValueError(f"unknown weighting {kind!r}")


def sds_gradient(eps_pred: Tensor, noise: Tensor, w: Tensor, clip: float | None = None) -> Tensor:
    """w(t)·(ε̂ − ε), NaNs and infinities zeroed, values clipped to ±clip when given. w: (B,)."""
    g = w.reshape(-1, *([1] * (eps_pred.dim() - 1))).to(eps_pred.dtype) * (eps_pred - noise)
    g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
    return g.clamp(-clip, clip) if clip is not None else g


def sds_loss(latents: Tensor, grad: Tensor) -> Tensor:
    """0.5·‖x − (x − g).detach()‖² summed per image and averaged over the batch: its gradient on
    each image's latents is exactly g / B, whatever lies between them and the scene."""
    target = (latents - grad).detach()
    return 0.5 * ((latents.float() - target.float()) ** 2).sum() / len(latents)
