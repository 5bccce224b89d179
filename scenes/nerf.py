"""Radiance fields in the instant-NGP form: a multiresolution hash grid (our kernel) read by a small
density MLP, and a colour MLP on the density features and SH-encoded view directions; plus the
occupancy grid that lets the ray marcher skip empty space. The field, the grid and the renderer
(`render_rays`) are separate parts so that text-to-3D can optimise the same field.

Space: a bounded scene maps its box to the hash grid's [0, 1]³; an unbounded one (forward-facing or
360° captures) is contracted first (mip-NeRF 360's contraction in the ∞-norm: |x| ≤ 1 stays, beyond
maps to 2 − 1/|x|), so everything out to infinity fits a box of half-size 2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from kernels.nerf import composite, hash_encode, march_rays


@dataclass
class FieldConfig:
    levels: int = 16
    features: int = 2
    log2_table: int = 17  # 2^17 entries per level: 16 MB of float32 table on a CPU
    n_min: int = 16
    n_max: int = 1024
    hidden: int = 64
    geo_features: int = 15
    sh_degree: int = 4  # 16 direction features (1: colour without view dependence, an albedo)
    blob_density: float = 0.0  # text-to-3D's start: density logits raised by this at the centre ...
    blob_radius: float = 0.5  # ... falling linearly to 0 at this radius and below it beyond (Magic3D)


def sh_encode(d: Tensor, degree: int = 4) -> Tensor:
    """Real spherical harmonics of unit directions (N, 3), degrees < `degree` → (N, degree²)."""
    x, y, z = d.unbind(-1)
    out = [torch.full_like(x, 0.28209479177387814)]
    if degree > 1:
        out += [-0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x]
    if degree > 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [1.0925484305920792 * xy, -1.0925484305920792 * yz, 0.94617469575755997 * zz - 0.31539156525251999,
                -1.0925484305920792 * xz, 0.54627421529603959 * (xx - yy)]
    if degree > 3:
        out += [0.59004358992664352 * y * (-3.0 * xx + yy), 2.8906114426405538 * xy * z,
                0.45704579946446572 * y * (1.0 - 5.0 * zz), 0.3731763325901154 * z * (5.0 * zz - 3.0),
                0.45704579946446572 * x * (1.0 - 5.0 * zz), 1.4453057213202769 * z * (xx - yy),
                0.59004358992664352 * x * (-xx + 3.0 * yy)]
    return torch.stack(out, -1)


def contract(x: Tensor) -> Tensor:
    """Unbounded space → the box of half-size 2 (∞-norm contraction)."""
    n = x.abs().max(-1, keepdim=True).values.clamp_min(1e-9)
    return torch.where(n <= 1, x, (2 - 1 / n) * x / n)


class _TruncExp(torch.autograd.Function):
    """exp with its gradient clamped, as instant-NGP does for density."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(-15, 15))


class RadianceField(nn.Module):
    """σ(x) and rgb(x, d). `centre`/`half` give the scene box; `unbounded` contracts beyond it."""

    def __init__(self, centre, half, unbounded: bool = False, cfg: FieldConfig | None = None, seed: int = 0):
        super().__init__()
        self.cfg = cfg = cfg or FieldConfig()
        g = torch.Generator().manual_seed(seed)
        self.table = nn.Parameter((torch.rand(cfg.levels, 2 ** cfg.log2_table, cfg.features, generator=g) * 2 - 1)
                                  * 1e-4)
        self.register_buffer("box_centre", torch.as_tensor(centre, dtype=torch.float32))
        self.register_buffer("box_half", torch.as_tensor(half, dtype=torch.float32))
        self.unbounded = unbounded
        enc = cfg.levels * cfg.features
        self.density_mlp = nn.Sequential(nn.Linear(enc, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1 + cfg.geo_features))
        self.active_levels = cfg.levels  # coarse-to-fine training (text-to-3D) masks the finer levels
        self.colour_mlp = nn.Sequential(nn.Linear(cfg.geo_features + cfg.sh_degree ** 2, cfg.hidden), nn.ReLU(),
                                        nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 3))

    def grid_box(self) -> tuple[Tensor, Tensor]:
        """The region the occupancy grid's outermost cascade must cover."""
        return self.box_centre, self.box_half * (2.0 if self.unbounded else 1.0)

    def normalise(self, x: Tensor) -> Tensor:
        u = (x - self.box_centre) / self.box_half
        if self.unbounded:
            return contract(u) / 4 + 0.5
        return u / 2 + 0.5

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        cfg = self.cfg
        enc = hash_encode(self.normalise(x), self.table, cfg.n_min, cfg.n_max)
        if self.active_levels < cfg.levels:
            enc = enc * (torch.arange(enc.shape[1], device=enc.device) < self.active_levels * cfg.features)
        h = self.density_mlp(enc)
        logit = h[:, 0] - 1.0
        if cfg.blob_density:
            r = (x - self.box_centre).norm(dim=-1)
            logit = logit + cfg.blob_density * (1 - r / cfg.blob_radius)
        return _TruncExp.apply(logit), h[:, 1:]

    def density(self, x: Tensor) -> Tensor:
        return self.features(x)[0]

    def forward(self, x: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        sigma, geo = self.features(x)
        rgb = torch.sigmoid(self.colour_mlp(torch.cat([geo, sh_encode(d, self.cfg.sh_degree)], -1)))
        return sigma, rgb


class OccupancyGrid(nn.Module):
    """Cascaded density grid (EMA with decay) and its occupancy bits, for `march_rays`. A module
    with buffers (as nerfacc's): `.to(device)` moves it, `state_dict` checkpoints it (the cells no
    camera sees are recomputed from the cameras, not stored)."""

    def __init__(self, centre: Tensor, half: Tensor, step: float, cascades: int = 1, res: int = 128,
                 min_optical_thickness: float = 0.01, decay: float = 0.95):
        super().__init__()
        if not (isinstance(res, int) and res >= 1 and cascades >= 1):
            raise ValueError(f"occupancy grid needs res >= 1 and cascades >= 1, got {res} and {cascades}")
        self.register_buffer("centre", centre.double())
        self.register_buffer("half_size", half.double() / (2 ** (cascades - 1)))
        # a cell is empty when one marching step through it would be nearly transparent (instant-NGP)
        self.cascades, self.res, self.threshold, self.decay = cascades, res, min_optical_thickness / step, decay
        self.register_buffer("density", torch.zeros((cascades, res, res, res), device=centre.device))
        # everything occupied until measured
        self.register_buffer("bits", torch.ones((cascades, res, res, res), dtype=torch.uint8, device=centre.device))
        self.register_buffer("visible", torch.ones((cascades, res, res, res), dtype=torch.bool, device=centre.device),
                             persistent=False)

    def cell_points(self, idx: Tensor, g: torch.Generator | None) -> Tensor:
        """World positions of random points in cells (flat indices into the grid); their centres
        without a generator."""
        r = self.res
        c, rest = idx // r ** 3, idx % r ** 3
        ijk = torch.stack([rest // (r * r), (rest // r) % r, rest % r], -1).double()
        frac = torch.full(ijk.shape, 0.5, dtype=torch.float64) if g is None else \
            torch.rand(ijk.shape, generator=g, dtype=torch.float64)
        frac = frac.to(ijk.device)
        u = (ijk + frac) / r  # in [0, 1)
        scale = (2.0 ** c).double()[:, None]
        return self.centre + (u * 2 - 1) * self.half_size * scale

    @torch.no_grad()
    def update(self, density_fn, step: int, g: torch.Generator, cells_per_update: int | None = None,
               part: tuple[int, int] = (0, 1), reduce=None) -> None:
        """instant-NGP's update: every cell at first, then random cells plus occupied ones;
        density = max(density·decay, σ at a random point of the cell); occupied above
        min(mean density, threshold). On several processes, `part` (rank, world) says which chunks
        of cells this one evaluates; `reduce` sums a tensor over the processes in place."""
        total, dev = self.density.numel(), self.density.device
        if step == 0 or cells_per_update is None:
            idx = torch.arange(total, device=dev)
        else:
            rand = torch.randint(0, total, (cells_per_update,), generator=g).to(dev)
            occ = torch.nonzero(self.bits.view(-1))[:, 0]
            occ = occ[torch.randperm(len(occ), generator=g).to(dev)[:cells_per_update]]
            idx = torch.unique(torch.cat([rand, occ]))  # one write per cell: duplicates would race
        visible = self.visible.view(-1)
        idx = idx[visible[idx]]
        flat = self.density.view(-1)
        chunks = idx.split(1 << 16)
        rank, world = part
        sigmas = []
        for c, chunk in enumerate(chunks):
            points = self.cell_points(chunk, g).float()  # drawn by every process: the generators stay alike
            sigmas.append(density_fn(points).double() if c % world == rank
                          else torch.zeros(len(chunk), dtype=torch.float64, device=dev))
        if world > 1 and sigmas:
            every = torch.cat(sigmas)
            reduce(every)
            sigmas = every.split([len(c) for c in chunks])
        for chunk, sigma in zip(chunks, sigmas):
            flat[chunk] = torch.maximum(flat[chunk] * self.decay, sigma.to(flat.dtype))
        mean = float(flat[visible].clamp_min(0).mean()) if bool(visible.any()) else 0.0
        self.bits = ((self.density > min(mean, self.threshold)) & self.visible).to(torch.uint8)

    @torch.no_grad()
    def mark_invisible(self, c2ws, intrinsics, near: float = 0.0, chunk: int = 1 << 20) -> float:
        """Mark the cells whose centre no training camera sees (in front of it beyond `near`, inside
        its image) as empty for good, as instant-NGP and nerfacc do: nothing constrains their density,
        and left occupied they fill unbounded scenes with samples. c2ws (N, 4, 4) OpenCV; one
        `engine.data.cameras.Intrinsics` each. Returns the visible fraction."""
        dev = self.density.device
        w2c = torch.as_tensor(np.linalg.inv(np.asarray(c2ws, dtype=np.float64)), dtype=torch.float32, device=dev)
        K = torch.tensor([[k.fx, k.fy, k.cx, k.cy, k.width, k.height] for k in intrinsics], dtype=torch.float32,
                         device=dev)
        vis = torch.zeros(self.density.numel(), dtype=torch.bool, device=dev)
        for idx in torch.arange(self.density.numel(), device=dev).split(chunk):
            x = self.cell_points(idx, None).float()
            seen = torch.zeros(len(idx), dtype=torch.bool, device=dev)
            for m, k in zip(w2c, K):
                p = x @ m[:3, :3].T + m[:3, 3]
                z = p[:, 2].clamp_min(1e-9)
                u, v = p[:, 0] / z * k[0] + k[2], p[:, 1] / z * k[1] + k[3]
                seen |= (p[:, 2] > near) & (u >= 0) & (u < k[4]) & (v >= 0) & (v < k[5])
            vis[idx] = seen
        self.visible = vis.view(self.density.shape)
        self.density[~self.visible] = 0.0
        self.bits &= self.visible.to(torch.uint8)
        return float(vis.float().mean())

    def occupied(self, x: Tensor) -> Tensor:
        """Which world points (N, 3) lie in occupied cells: the space the renderer samples. (N,) bool."""
        from kernels.nerf_reference import occupied

        return occupied(x, self.bits, self.centre, self.half_size)

    def march(self, origins, dirs, near, far, dt_min, dt_max=1e10, cone=0.0):
        return march_rays(origins, dirs, near, far, self.bits, self.centre, self.half_size, dt_min, dt_max, cone)


def render_rays(field: RadianceField, grid: OccupancyGrid, origins: Tensor, dirs: Tensor, near: Tensor, far: Tensor,
                dt_min: float, background: Tensor, cone: float = 0.0, dt_max: float = 1e10) -> dict[str, Tensor]:
    """rgb (R, 3) over `background`, opacity (R,), depth (R,) and the number of samples."""
    ray_indices, t0, t1 = grid.march(origins, dirs, near, far, dt_min, dt_max, cone)
    mid = 0.5 * (t0 + t1)
    x = origins[ray_indices] + mid[:, None] * dirs[ray_indices]
    sigma, rgb = field(x, dirs[ray_indices])
    colour, opacity, depth = composite(sigma, rgb, t0, t1, ray_indices, len(origins))
    return {"rgb": colour + (1 - opacity[:, None]) * background, "opacity": opacity, "depth": depth,
            "samples": len(ray_indices)}


def exclusive_ray_sums(values: Tensor, ray_indices: Tensor) -> Tensor:
    """For packed samples (ray_indices sorted), the sum of the values before each sample on its ray:
    with optical depths, −log of the transmittance in front of each sample."""
    excl = torch.cumsum(values, 0) - values
    starts = torch.ones_like(ray_indices, dtype=torch.bool)
    starts[1:] = ray_indices[1:] != ray_indices[:-1]
    return excl - excl[starts][torch.cumsum(starts.long(), 0) - 1]


@torch.no_grad()
def render_rays_inference(field: RadianceField, grid: OccupancyGrid, origins: Tensor, dirs: Tensor, near: Tensor,
                          far: Tensor, dt_min: float, background: Tensor, cone: float = 0.0, dt_max: float = 1e10,
                          t_min: float = 1e-4, first: int = 16) -> dict[str, Tensor]:
    """:func:`render_rays` without gradients, evaluating only the samples that show: every ray is
    marched, then the field is queried front to back in rounds (`first` samples of each ray, then
    twice as many each round); rays whose transmittance fell below `t_min` retire, and colour is
    computed only for samples in front of that. The result is the same composite as
    `kernels.nerf.composite` (which stops at `t_min` too), at a fraction of the queries."""
    R, dev = len(origins), origins.device
    ray_idx, t0, t1 = grid.march(origins, dirs, near, far, dt_min, dt_max, cone)
    counts = torch.bincount(ray_idx, minlength=R)
    local = torch.arange(len(ray_idx), device=dev) - (torch.cumsum(counts, 0) - counts)[ray_idx]
    T = torch.ones(R, dtype=torch.float64, device=dev)
    rgb = torch.zeros(R, 3, device=dev)
    opacity = torch.zeros(R, device=dev)
    depth = torch.zeros(R, device=dev)
    lo, size, queried = 0, first, 0
    top = int(counts.max()) if R else 0
    while lo < top:
        sel = ((local >= lo) & (local < lo + size) & (T >= t_min)[ray_idx]).nonzero().squeeze(1)
        lo, size = lo + size, size * 2
        if not len(sel):
            break
        r, a, b = ray_idx[sel], t0[sel], t1[sel]
        mid = 0.5 * (a + b)
        sigma, geo = field.features(origins[r] + mid[:, None] * dirs[r])
        queried += len(sel)
        tau = sigma.double() * (b - a).double()
        # transmittance before each sample: the ray's so far times this round's exclusive product
        before = T[r] * torch.exp(-exclusive_ray_sums(tau, r))
        show = before >= t_min
        w = (before * -torch.expm1(-tau)).float() * show
        k = show.nonzero().squeeze(1)
        colour = torch.sigmoid(field.colour_mlp(torch.cat([geo[k], sh_encode(dirs[r[k]], field.cfg.sh_degree)], -1)))
        rgb.index_add_(0, r[k], w[k, None] * colour)
        opacity.index_add_(0, r, w)
        depth.index_add_(0, r, w * mid)
        T *= torch.exp(-torch.zeros(R, dtype=torch.float64, device=dev).index_add_(0, r, tau))
    return {"rgb": rgb + (1 - opacity[:, None]) * background, "opacity": opacity, "depth": depth,
            "samples": len(ray_idx), "queried": queried}


MARCH_STEPS = 1024  # instant-NGP's marching steps across the box's diagonal


def default_step(half: Tensor, steps: int = MARCH_STEPS) -> float:
    """instant-NGP's step: the box's diagonal over `steps`."""
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"marching steps must be a whole number >= 1, got {steps!r}")
    return float(2 * math.sqrt(3) * half.max() / steps)
