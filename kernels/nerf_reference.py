"""Plain-torch specification of the NeRF ops: the native kernels are tested against these.

Hash encoding (instant-NGP): L levels with resolutions growing geometrically from N_min to N_max;
level l scales [0, 1]³ by s_l = N_min · b^l − 1 (b = (N_max / N_min)^(1/(L−1))), looks up the 8
corners of the cell around x·s_l + 0.5 — densely indexed when the level's (⌈s_l⌉ + 1)³ corners fit
the table of T entries, through instant-NGP's spatial hash otherwise — and interpolates trilinearly.
Positions are clamped to [0, 1]³ (outside the grid, the boundary's features).

Compositing: packed samples of rays (ray index sorted, t_start ≤ t_end, density σ ≥ 0, colour) →
per-ray colour, opacity and depth with T_i = exp(−Σ_{j<i} σ_j δ_j), α_i = 1 − exp(−σ_i δ_i),
w_i = T_i α_i; a ray stops at the first sample whose transmittance T_i is below `t_min` (that sample
and the ones after it contribute nothing).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

PRIMES = (1, 2654435761, 805459861)


def level_scales(levels: int, n_min: int, n_max: int) -> list[float]:
    b = math.exp((math.log(n_max) - math.log(n_min)) / max(levels - 1, 1))
    return [n_min * b ** level - 1.0 for level in range(levels)]


def level_layout(levels: int, n_min: int, n_max: int, table_size: int) -> list[tuple[float, int, bool]]:
    """Per level: (scale, resolution, dense)."""
    out = []
    for s in level_scales(levels, n_min, n_max):
        res = int(math.ceil(s)) + 1
        out.append((s, res, res ** 3 <= table_size))
    return out


def corner_index(corner: Tensor, res: int, dense: bool, table_size: int) -> Tensor:
    """(…, 3) integer corners → table row (…,)."""
    c = corner.to(torch.int64)
    if dense:  # a corner past the last one (a scale just under an integer) wraps, as in tiny-cuda-nn
        return (c[..., 0] + res * (c[..., 1] + res * c[..., 2])) % table_size
    h = (c[..., 0] * PRIMES[0]) ^ (c[..., 1] * PRIMES[1]) ^ (c[..., 2] * PRIMES[2])
    return (h & 0xFFFFFFFF) % table_size


def hash_encode(x: Tensor, table: Tensor, n_min: int, n_max: int) -> Tensor:
    """x (N, 3) in [0, 1]³ (clamped); table (L, T, F) → (N, L·F) features, level-major."""
    L, T, F = table.shape
    x = x.clamp(0.0, 1.0)
    feats = []
    for level, (s, res, dense) in enumerate(level_layout(L, n_min, n_max, T)):
        pos = x * s + 0.5
        cell = torch.floor(pos)
        frac = pos - cell
        out = torch.zeros(x.shape[0], F, dtype=table.dtype, device=table.device)
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    off = torch.tensor([dx, dy, dz], dtype=x.dtype, device=x.device)
                    w = torch.prod(torch.where(off.bool(), frac, 1 - frac), dim=-1)
                    idx = corner_index(cell + off, res, dense, T)
                    out = out + w[:, None] * table[level, idx]
        feats.append(out)
    return torch.cat(feats, dim=1)


def composite(sigmas: Tensor, rgbs: Tensor, t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor, num_rays: int,
              t_min: float = 1e-4) -> tuple[Tensor, Tensor, Tensor]:
    """Packed samples (M,), (M, 3), (M,), (M,), ray_indices (M,) sorted → rgb (R, 3), opacity (R,),
    depth (R,) (the weights' sum of sample midpoints, not normalised)."""
    M = sigmas.shape[0]
    dtype, dev = sigmas.dtype, sigmas.device
    tau = sigmas * (t_ends - t_starts)
    # optical depth before each sample within its ray: the running sum minus the sum up to the ray's start
    csum = torch.cumsum(tau, 0)
    first = torch.ones(M, dtype=torch.bool, device=dev)
    first[1:] = ray_indices[1:] != ray_indices[:-1]
    start_of = torch.cummax(torch.where(first, torch.arange(M, device=dev), 0), 0).values
    padded = torch.cat([torch.zeros(1, dtype=dtype, device=dev), csum])
    before = csum - tau - padded[start_of]
    trans = torch.exp(-before)
    alive = trans >= t_min
    w = torch.where(alive, trans * (1 - torch.exp(-tau)), torch.zeros_like(trans))
    mid = 0.5 * (t_starts + t_ends)
    rgb = torch.zeros(num_rays, 3, dtype=dtype, device=dev).index_add(0, ray_indices, w[:, None] * rgbs)
    opacity = torch.zeros(num_rays, dtype=dtype, device=dev).index_add(0, ray_indices, w)
    depth = torch.zeros(num_rays, dtype=dtype, device=dev).index_add(0, ray_indices, w * mid)
    return rgb, opacity, depth


def occupied(p: Tensor, bits: Tensor, centre, half) -> Tensor:
    """Is each point (N, 3) in an occupied cell of the cascaded grid (see `march_rays`)? False outside
    every cascade. (N,) bool."""
    C, G = bits.shape[0], bits.shape[1]
    p = p.double()
    centre = torch.as_tensor(centre, dtype=torch.float64, device=p.device)
    half = torch.as_tensor(half, dtype=torch.float64, device=p.device)
    m = ((p - centre).abs() / half).max(1).values
    c = torch.zeros_like(m, dtype=torch.long)
    sc = torch.ones_like(m)
    for _ in range(C):
        grow = (m > sc) & (c < C)
        sc = torch.where(grow, sc * 2, sc)
        c = c + grow.long()
    inside = c < C
    u = (p - (centre - half * sc[:, None])) / (2.0 * half * sc[:, None])
    cell = torch.floor(u * G).long().clamp(0, G - 1)
    out = torch.zeros(len(p), dtype=torch.bool, device=p.device)
    out[inside] = bits[c[inside], cell[inside, 0], cell[inside, 1], cell[inside, 2]] != 0
    return out


def march_rays(origins: Tensor, dirs: Tensor, near: Tensor, far: Tensor, bits: Tensor, centre, half,
               dt_min: float, dt_max: float, cone: float) -> tuple[Tensor, Tensor]:
    """Occupancy-grid ray marching (float64). Cascade c covers centre ± half·2^c with G³ cells (bits
    (C, G, G, G), nonzero = occupied). From where a ray enters the outermost box (clipped to
    [near, far]) it steps by dt = clamp(t·cone, dt_min, dt_max); a step is a sample [t, t + dt) when
    its midpoint's cell is occupied. Returns ray_indices (M,) sorted and t (M, 2)."""
    C = bits.shape[0]
    o, d = origins.double(), dirs.double()
    centre = torch.as_tensor(centre, dtype=torch.float64)
    half = torch.as_tensor(half, dtype=torch.float64)
    scale = float(2 ** (C - 1))
    bmin, bmax = centre - half * scale, centre + half * scale
    lo, hi = near.double().clone(), far.double().clone()
    for a in range(3):
        par = d[:, a] == 0
        ta = (bmin[a] - o[:, a]) / torch.where(par, torch.ones_like(d[:, a]), d[:, a])
        tb = (bmax[a] - o[:, a]) / torch.where(par, torch.ones_like(d[:, a]), d[:, a])
        t_lo, t_hi = torch.minimum(ta, tb), torch.maximum(ta, tb)
        outside = par & ((o[:, a] < bmin[a]) | (o[:, a] > bmax[a]))
        lo = torch.where(par, lo, torch.maximum(lo, t_lo))
        hi = torch.where(par, torch.where(outside, lo - 1.0, hi), torch.minimum(hi, t_hi))
    t = lo.clone()
    rays, starts, ends = [], [], []
    active = t < hi
    while bool(active.any()):
        dt = (t * cone).clamp(dt_min, dt_max)
        mid = t + 0.5 * dt
        occ = occupied(o + mid[:, None] * d, bits, centre, half) & active
        hit = torch.nonzero(occ)[:, 0]
        rays.append(hit)
        starts.append(t[hit])
        ends.append((t + dt)[hit])
        t = torch.where(active, t + dt, t)
        active = active & (t < hi)
    ray = torch.cat(rays) if rays else torch.zeros(0, dtype=torch.long)
    t0 = torch.cat(starts) if starts else torch.zeros(0, dtype=torch.float64)
    t1 = torch.cat(ends) if ends else torch.zeros(0, dtype=torch.float64)
    order = torch.argsort(ray * (t0.numel() + 1) + torch.arange(len(ray)), stable=True)  # by ray, then step
    return ray[order], torch.stack([t0[order], t1[order]], 1)
