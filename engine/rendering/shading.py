"""Shading of a surface's albedo under one light, DreamFusion's three modes: the albedo alone,
Lambertian (albedo × (ambient + diffuse·max(0, n·l))) and textureless (white × the same light),
which makes geometry carry the shape instead of paint."""
from __future__ import annotations

import torch
from torch import Tensor

MODES = ("albedo", "lambertian", "textureless")


def shade(albedo: Tensor, normals: Tensor | None, light_dir: Tensor | None, mode: str,
          ambient: float = 0.1) -> Tensor:
    """albedo (N, 3), unit normals and unit directions towards the light (N, 3) → colour (N, 3)."""
    if mode == "albedo":
        return albedo
    if mode not in MODES:
        raise ValueError(f"unknown shading {mode!r} (one of {', '.join(MODES)})")
    light = ambient + (1 - ambient) * (normals * light_dir).sum(-1, keepdim=True).clamp_min(0)
    return (albedo if mode == "lambertian" else torch.ones_like(albedo)) * light


def density_normals(density_fn, x: Tensor, eps: float, sigma: Tensor | None = None) -> Tensor:
    """Unit outward normals −∇σ/|∇σ| at x (N, 3) by finite differences of the density (the hash
    grid's backward is first-order, so autograd cannot differentiate a gradient); the normals keep
    their gradient to the field. Forward differences from `sigma` (σ at x) when given: 3 density
    queries a point; else central differences: 6."""
    offsets = torch.eye(3, device=x.device, dtype=x.dtype) * eps
    if sigma is not None:
        s = density_fn(torch.cat([x + offsets[k] for k in range(3)])).reshape(3, len(x))
        grad = (s - sigma[None]).T / eps
    else:
        s = density_fn(torch.cat([x + offsets[k] for k in range(3)] + [x - offsets[k] for k in range(3)]))
        s = s.reshape(6, len(x))
        grad = (s[:3] - s[3:]).T / (2 * eps)
    return -grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-9)
