"""A mesh from 3D Gaussians (DreamGaussian's extraction): their summed density
Σ opacity·exp(−½ dᵀΣ⁻¹d) on a lattice, marching cubes at a level (1 by default), and vertex
colours averaged from the Gaussians with the same weights. Each Gaussian is splatted onto the
lattice points within three standard deviations only, so the cost follows the Gaussians' size,
not Gaussians × lattice points."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from scenes.gaussians import sh_dc_to_rgb

MAX_REACH = 12  # lattice steps a Gaussian reaches at most (larger ones are cut off there)


def _covariance_inverse(log_scales: Tensor, quats: Tensor) -> Tensor:
    from kernels.splat_reference import quat_to_rotmat

    R = quat_to_rotmat(quats)
    inv_s2 = torch.exp(-2 * log_scales)
    return (R * inv_s2[:, None, :]) @ R.transpose(1, 2)


@torch.no_grad()
def density_lattice(params: dict, lo: np.ndarray, hi: np.ndarray, resolution: int,
                    budget: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """Density (R, R, R) at lattice points lo + (k + ½)·(hi − lo)/R, and the weight-averaged
    colour (R, R, R, 3) there (SH degree 0)."""
    R = resolution
    lo_t = torch.as_tensor(lo, dtype=torch.float64)
    spacing = torch.as_tensor((np.asarray(hi) - np.asarray(lo)) / R, dtype=torch.float64)
    mu = params["means"].detach().double().cpu()
    inv = _covariance_inverse(params["log_scales"].detach().double().cpu(), params["quats"].detach().double().cpu())
    opacity = torch.sigmoid(params["opacity_logits"].detach().double().cpu())
    rgb = sh_dc_to_rgb(params["sh_dc"].detach().double().cpu()[:, 0]).clamp(0, 1)
    reach = (3 * torch.exp(params["log_scales"].detach().double().cpu()).max(1).values / spacing.min()).ceil()
    reach = reach.clamp(1, MAX_REACH).long()
    density = torch.zeros(R ** 3, dtype=torch.float64)
    colour = torch.zeros(R ** 3, 3, dtype=torch.float64)
    centre_idx = torch.floor((mu - lo_t) / spacing - 0.5).long()
    for k in reach.unique().tolist():
        r = torch.arange(-k, k + 2)  # the floor above leaves the centre between voxels c and c + 1
        off = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
        members = torch.nonzero(reach == k)[:, 0]
        for chunk in members.split(max(1, budget // len(off))):
            idx = centre_idx[chunk][:, None, :] + off[None]  # (n, O, 3)
            inside = ((idx >= 0) & (idx < R)).all(-1)
            p = lo_t + (idx.double() + 0.5) * spacing
            d = p - mu[chunk][:, None, :]
            m = torch.einsum("noi,nij,noj->no", d, inv[chunk], d)
            w = opacity[chunk][:, None] * torch.exp(-0.5 * m) * inside
            flat = (idx[..., 0] * R + idx[..., 1]) * R + idx[..., 2]
            flat = torch.where(inside, flat, torch.zeros_like(flat)).reshape(-1)
            density.index_add_(0, flat, w.reshape(-1))
            colour.index_add_(0, flat, (w[..., None] * rgb[chunk][:, None, :]).reshape(-1, 3))
    colour = colour / density.clamp_min(1e-12)[:, None]
    return density.reshape(R, R, R).numpy(), colour.reshape(R, R, R, 3).numpy()


def gaussians_mesh(params: dict, resolution: int = 128, level: float = 1.0, extent: float | None = None) -> dict:
    """vertices, faces, colours (uint8) of the Gaussians' density surface at `level`, in a cube
    around their opaque part (or of half-size `extent` about the origin)."""
    from scenes.nerf_mesh import surface

    if extent is None:
        opaque = torch.sigmoid(params["opacity_logits"].detach()) > 0.05
        pts = params["means"].detach()[opaque] if bool(opaque.any()) else params["means"].detach()
        extent = 1.1 * float(pts.abs().max()) + 1e-3
    lo, hi = np.full(3, -extent), np.full(3, extent)
    density, colour = density_lattice(params, lo, hi, resolution)
    verts, faces = surface(density, lo, hi, level)
    spacing = (hi - lo) / resolution
    if len(verts):  # the colour of the nearest lattice point
        k = np.clip(np.floor((verts - lo) / spacing), 0, resolution - 1).astype(int)
        rgb = colour[k[:, 0], k[:, 1], k[:, 2]]
    else:
        rgb = np.zeros((0, 3))
    return {"vertices": verts, "faces": faces, "colours": (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8),
            "level": level, "extent": extent, "max_density": float(density.max()) if density.size else 0.0}
