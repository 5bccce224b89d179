"""The shipped model's diffusion: DDPM's linear β schedule, the training loss and a DDIM sampler
with classifier-free guidance."""
from __future__ import annotations

import torch
from torch import Tensor

from engine.guidance.objects.model import ObjectsUNet, Tokenizer


def linear_alphas_cumprod(T: int = 1000) -> Tensor:
    """ᾱ_t of DDPM's linear β schedule, 1e-4 … 0.02 (float64, (T,))."""
    return torch.cumprod(1 - torch.linspace(1e-4, 0.02, T, dtype=torch.float64), 0)


def noisy(x0: Tensor, t: Tensor, noise: Tensor, alphas_cumprod: Tensor) -> Tensor:
    a = alphas_cumprod[t].float().reshape(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def loss_weights(t: Tensor, alphas_cumprod: Tensor, gamma: float) -> Tensor:
    """Min-SNR-γ (Hang et al. 2023) for ε-prediction: min(SNR, γ)/SNR per sample (1 when γ = 0)."""
    if gamma <= 0:
        return torch.ones(len(t))
    a = alphas_cumprod[t]
    snr = a / (1 - a)
    return (snr.clamp(max=gamma) / snr).float()


@torch.no_grad()
def sample(model: ObjectsUNet, captions: list[str], generator: torch.Generator, steps: int = 50,
           scale: float = 4.0, dtype: torch.dtype = torch.float32) -> Tensor:
    """DDIM (η = 0) images (B, 3, S, S) in [0, 1] for captions, ε̂ = ε_u + scale·(ε_c − ε_u)."""
    ac = linear_alphas_cumprod(model.cfg.T)
    tok = Tokenizer()
    B, S = len(captions), model.cfg.size
    ids = torch.cat([tok(captions), tok([""] * B)])
    text = model.encode_text(ids)
    x = torch.randn(B, 3, S, S, generator=generator)
    # the last step goes from t ≈ T/steps straight to the clean image: t = 0 itself teaches nothing
    ts = torch.linspace(model.cfg.T - 1, 0, steps + 1)[:-1].round().long()
    for i, t in enumerate(ts):
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            e = model(torch.cat([x, x]), t.repeat(2 * B), text=text).float()
        e_c, e_u = e.chunk(2)
        eps = e_u + scale * (e_c - e_u)
        a = ac[t].float()
        a_prev = ac[ts[i + 1]].float() if i + 1 < len(ts) else torch.tensor(1.0)
        x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()  # the noise that agrees with the clamped x0
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return (x.clamp(-1, 1) + 1) / 2
