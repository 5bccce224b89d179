"""NeRF ops on the native kernels, each an autograd function with the same results as its twin in
`kernels.nerf_reference` (tested in float64): the multiresolution hash encoding and the compositing of
packed ray samples."""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from kernels import nerf_reference as ref


def _ops(t: Tensor):
    """C++/OpenMP on CPU; CUDA on NVIDIA GPUs (compiled in CI, not yet run on a GPU)."""
    from kernels._build import nerf_cpu_ops, nerf_cuda_ops

    if t.device.type == "cpu":
        return nerf_cpu_ops()
    if t.device.type == "cuda":
        return nerf_cuda_ops()
    raise NotImplementedError(f"no native NeRF kernels for device {t.device.type!r} (CPU and CUDA only)")


@lru_cache(maxsize=None)
def _layout(levels: int, n_min: int, n_max: int, table_size: int) -> tuple[Tensor, Tensor, Tensor]:
    lay = ref.level_layout(levels, n_min, n_max, table_size)
    return (torch.tensor([s for s, _, _ in lay], dtype=torch.float64), torch.tensor([r for _, r, _ in lay]),
            torch.tensor([d for _, _, d in lay]))


class _HashEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, table, n_min, n_max):
        layout = _layout(table.shape[0], n_min, n_max, table.shape[1])
        ctx.save_for_backward(x, table)
        ctx.layout = layout
        return _ops(table).hash_encode_fwd(x.contiguous(), table.contiguous(), *layout)

    @staticmethod
    def backward(ctx, grad):
        x, table = ctx.saved_tensors
        g_table, g_x = _ops(table).hash_encode_bwd(x.contiguous(), table.contiguous(), *ctx.layout, grad.contiguous(),
                                                   ctx.needs_input_grad[0])
        return (g_x if ctx.needs_input_grad[0] else None), g_table, None, None


def hash_encode(x: Tensor, table: Tensor, n_min: int, n_max: int) -> Tensor:
    """x (N, 3) in [0, 1]³ (clamped), table (L, T, F) → (N, L·F); gradients to the table and to x."""
    if x.dtype != table.dtype:
        raise TypeError(f"x is {x.dtype} and the table {table.dtype}: they must match")
    return _HashEncode.apply(x, table, n_min, n_max)


def ray_offsets(ray_indices: Tensor, num_rays: int) -> Tensor:
    """Sorted ray indices of packed samples → (R + 1,) offsets of each ray's samples."""
    return torch.searchsorted(ray_indices, torch.arange(num_rays + 1, device=ray_indices.device))


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sigmas, rgbs, t_starts, t_ends, offsets, t_min):
        args = [t.contiguous() for t in (sigmas, rgbs, t_starts, t_ends)] + [offsets, t_min]
        rgb, opacity, depth = _ops(sigmas).composite_fwd(*args)
        ctx.save_for_backward(*args[:5], rgb, opacity, depth)
        ctx.t_min = t_min
        ctx.mark_non_differentiable()
        return rgb, opacity, depth

    @staticmethod
    def backward(ctx, g_rgb, g_opacity, g_depth):
        sigmas, rgbs, t0, t1, offsets, rgb, opacity, depth = ctx.saved_tensors
        grads = [torch.zeros_like(o) if g is None else g.contiguous()
                 for g, o in ((g_rgb, rgb), (g_opacity, opacity), (g_depth, depth))]
        g_sigma, g_rgbs = _ops(sigmas).composite_bwd(sigmas, rgbs, t0, t1, offsets, ctx.t_min, rgb, opacity, depth,
                                                     *grads)
        return g_sigma, g_rgbs, None, None, None, None


def composite(sigmas: Tensor, rgbs: Tensor, t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor, num_rays: int,
              t_min: float = 1e-4) -> tuple[Tensor, Tensor, Tensor]:
    """Packed samples → per-ray rgb (R, 3), opacity (R,), depth (R,); see `nerf_reference.composite`.
    Gradients flow to sigmas and rgbs (the sample intervals are constants)."""
    if len(ray_indices) and (bool((ray_indices[1:] < ray_indices[:-1]).any()) or int(ray_indices[0]) < 0
                             or int(ray_indices[-1]) >= num_rays):
        raise ValueError("ray_indices must be sorted and within [0, num_rays)")
    return _Composite.apply(sigmas, rgbs, t_starts, t_ends, ray_offsets(ray_indices, num_rays), t_min)


def march_rays(origins: Tensor, dirs: Tensor, near: Tensor, far: Tensor, bits: Tensor, centre, half,
               dt_min: float, dt_max: float = 1e10, cone: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """Samples of rays through an occupancy grid (see `nerf_reference.march_rays`): ray_indices (M,)
    sorted, t_starts (M,), t_ends (M,) in the origins' dtype. Marching runs in float64."""
    if bits.dtype != torch.uint8 or bits.dim() != 4:
        raise TypeError("occupancy bits must be a uint8 tensor (cascades, G, G, G)")
    d64 = lambda t: torch.as_tensor(t, dtype=torch.float64, device=bits.device).contiguous()  # noqa: E731
    ray_indices, ts = _ops(bits).march_rays(d64(origins), d64(dirs), d64(near), d64(far), bits.contiguous(),
                                            d64(centre), d64(half), float(dt_min), float(dt_max), float(cone))
    return ray_indices, ts[:, 0].to(origins.dtype), ts[:, 1].to(origins.dtype)
