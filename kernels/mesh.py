"""Differentiable mesh rendering on the native kernels, with nvdiffrast's interface and conventions:
`rasterize`, `interpolate`, `texture` and `antialias`, each an autograd function with the same results
as its twin in `kernels.mesh_reference` (tested in float64). See `kernels/csrc/mesh_math.h` for the
conventions (clip space in, pixel centres, barycentrics, derivatives)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kernels import mesh_reference as ref

FILTERS = {"nearest": 0, "linear": 1, "linear-mipmap-linear": 2}
BOUNDARIES = {"wrap": 0, "clamp": 1}


def _ops(t: Tensor):
    """C++/OpenMP on CPU; CUDA on NVIDIA GPUs."""
    from kernels._build import mesh_cpu_ops, mesh_cuda_ops

    if t.device.type == "cpu":
        return mesh_cpu_ops()
    if t.device.type == "cuda":
        return mesh_cuda_ops()
    raise NotImplementedError(f"no native mesh kernels for device {t.device.type!r} (CPU and CUDA only)")


def _tri(tri: Tensor) -> Tensor:
    if tri.dim() != 2 or tri.shape[-1] != 3 or tri.dtype not in (torch.int32, torch.int64):
        raise TypeError("tri must be an integer tensor (F, 3)")
    return tri.to(torch.int32).contiguous()


class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pos, tri, height, width):
        rast, db = _ops(pos).rasterize_fwd(pos, tri, height, width)
        ctx.save_for_backward(pos, tri, rast)
        ctx.mark_non_differentiable(db)
        return rast, db

    @staticmethod
    def backward(ctx, g_rast, _g_db):
        pos, tri, rast = ctx.saved_tensors
        if g_rast is None:
            return None, None, None, None
        return _ops(pos).rasterize_bwd(pos, tri, rast, g_rast.contiguous()), None, None, None


def rasterize(pos: Tensor, tri: Tensor, resolution: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """pos (B, V, 4) or (V, 4) clip-space positions, tri (F, 3), resolution (height, width) →
    rast (B, H, W, 4) = (u, v, z/w, triangle id + 1) and rast_db (B, H, W, 4) = (du/dX, du/dY, dv/dX, dv/dY).

    Perspective-correct barycentrics of the nearest triangle (lower id on equal depth), clipped to the near
    and far planes (−1 ≤ z/w ≤ 1). Gradients flow from u and v to pos; z/w and rast_db are constants."""
    if pos.dim() == 2:
        pos = pos[None]
    if pos.dim() != 3 or pos.shape[-1] != 4:
        raise TypeError("pos must be (B, V, 4) or (V, 4) clip-space positions")
    height, width = int(resolution[0]), int(resolution[1])
    return _Rasterize.apply(pos.contiguous(), _tri(tri), height, width)


class _Interpolate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, attr, rast, tri, rast_db):
        want = rast_db is not None
        out, da = _ops(attr).interpolate_fwd(attr, rast, tri, rast_db.contiguous() if want else rast, want)
        ctx.save_for_backward(attr, rast, tri)
        if want:
            ctx.mark_non_differentiable(da)
        return out, (da if want else None)

    @staticmethod
    def backward(ctx, g_out, _g_da):
        attr, rast, tri = ctx.saved_tensors
        g_attr, g_rast = _ops(attr).interpolate_bwd(attr, rast, tri, g_out.contiguous())
        return g_attr, g_rast, None, None


def interpolate(attr: Tensor, rast: Tensor, tri: Tensor, rast_db: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """attr (V, C), (1, V, C) or (B, V, C) → per pixel (B, H, W, C) (0 where no triangle) and, given
    rast_db, the pixel derivatives (B, H, W, 2C) = (dA/dX, dA/dY) per channel (constants: they only
    choose mip levels). Gradients reach attr and, through rast, the positions."""
    if attr.dim() == 2:
        attr = attr[None]
    attr = attr.to(rast.dtype).contiguous()
    return _Interpolate.apply(attr, rast.contiguous(), _tri(tri), rast_db)


class _Box2(torch.autograd.Function):
    """The 2×2 box average of a (B, h, w, C) image with even sides, in its channels-last layout (no
    transposes: 4× faster than avg_pool2d here), and its backward as one broadcast copy."""

    @staticmethod
    def forward(ctx, x):
        return (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2]) * 0.25

    @staticmethod
    def backward(ctx, g):
        B, h, w, C = g.shape
        out = g.new_empty(B, 2 * h, 2 * w, C)
        quarter = g * 0.25
        for a in (0, 1):
            for b in (0, 1):
                out[:, a::2, b::2] = quarter
        return out


def mip_pyramid(tex: Tensor, max_levels: int | None = None) -> list[Tensor]:
    """(Bt, h, w, C) → levels down to 1×1 (or max_levels + 1 levels), each the 2×2 box average of the
    one above (area average for odd sizes); differentiable, so gradients reach the base texture."""
    levels = [tex]
    while max(levels[-1].shape[1:3]) > 1 and (max_levels is None or len(levels) <= max_levels):
        h, w = levels[-1].shape[1:3]
        x = levels[-1]
        if h % 2 == 0 and w % 2 == 0:
            levels.append(_Box2.apply(x))
        else:
            size = (max(1, h // 2), max(1, w // 2))
            levels.append(F.interpolate(x.permute(0, 3, 1, 2), size=size, mode="area").permute(0, 2, 3, 1))
    return levels


class _Texture(torch.autograd.Function):
    @staticmethod
    def forward(ctx, flat, layout, uv, uv_da, filter_id, boundary_id):
        out = _ops(flat).texture_fwd(flat, layout, uv, uv_da, filter_id, boundary_id)
        ctx.save_for_backward(flat, layout, uv, uv_da)
        ctx.modes = (filter_id, boundary_id)
        return out

    @staticmethod
    def backward(ctx, g_out):
        flat, layout, uv, uv_da = ctx.saved_tensors
        g_flat, g_uv = _ops(flat).texture_bwd(flat, layout, uv, uv_da, *ctx.modes, g_out.contiguous())
        return g_flat, None, g_uv, None, None, None


def _layout(sizes: list[tuple[int, int]]) -> Tensor:
    """(L, 3) width, height and first texel of each level in the flat buffer."""
    offsets = torch.tensor([0] + [w * h for w, h in sizes]).cumsum(0)[:-1]
    return torch.tensor([[w, h, int(o)] for (w, h), o in zip(sizes, offsets)], dtype=torch.int64)


def _box_levels(shape: tuple[int, int], max_levels: int | None) -> list[tuple[int, int]] | None:
    """(w, h) of each level when every level halves an even-sided parent (a 2×2 box pyramid), else None."""
    h, w = shape
    sizes = [(w, h)]
    while max(h, w) > 1 and (max_levels is None or len(sizes) <= max_levels):
        if h % 2 or w % 2:
            return None
        h, w = h // 2, w // 2
        sizes.append((w, h))
    return sizes


class _TexturePyramid(torch.autograd.Function):
    """Mipmapped sampling of a texture whose pyramid is 2×2 boxes all the way: the pyramid is built
    without autograd, and the backward folds each level's gradient into the level below it in place
    (÷4 per texel) — one pass per level instead of autograd's buffers for every box average."""

    @staticmethod
    def forward(ctx, tex, uv, uv_da, sizes, boundary_id):
        B, C = tex.shape[0], tex.shape[-1]
        layout = _layout(sizes)
        flat = torch.empty(B, int(layout[-1, 2]) + sizes[-1][0] * sizes[-1][1], C, dtype=tex.dtype, device=tex.device)
        level = tex
        for k, (w, h) in enumerate(sizes):
            if k:
                level = (level[:, 0::2, 0::2] + level[:, 1::2, 0::2] + level[:, 0::2, 1::2] + level[:, 1::2, 1::2]) * 0.25
            flat[:, int(layout[k, 2]):int(layout[k, 2]) + w * h] = level.reshape(B, w * h, C)
        out = _ops(flat).texture_fwd(flat, layout, uv, uv_da, FILTERS["linear-mipmap-linear"], boundary_id)
        ctx.save_for_backward(flat, layout, uv, uv_da)
        ctx.sizes, ctx.boundary = sizes, boundary_id
        return out

    @staticmethod
    def backward(ctx, g_out):
        flat, layout, uv, uv_da = ctx.saved_tensors
        g_flat, g_uv = _ops(flat).texture_bwd(flat, layout, uv, uv_da, FILTERS["linear-mipmap-linear"], ctx.boundary,
                                              g_out.contiguous())
        B, C = flat.shape[0], flat.shape[-1]
        levels = [g_flat[:, int(layout[k, 2]):int(layout[k, 2]) + w * h].view(B, h, w, C)
                  for k, (w, h) in enumerate(ctx.sizes)]
        for k in range(len(levels) - 1, 0, -1):
            quarter = levels[k] * 0.25
            for a in (0, 1):  # four strided adds: 8× faster here than one broadcast add
                for b in (0, 1):
                    levels[k - 1][:, a::2, b::2].add_(quarter)
        return levels[0], g_uv, None, None, None


def texture(tex: Tensor, uv: Tensor, uv_da: Tensor | None = None, filter_mode: str = "auto",
            boundary_mode: str = "wrap", max_mip_level: int | None = None, mips: list[Tensor] | None = None) -> Tensor:
    """Sample tex (Ht, Wt, C) or (1 or B, Ht, Wt, C) at uv (B, H, W, 2) → (B, H, W, C).

    filter_mode: nearest | linear | linear-mipmap-linear (auto: the last when uv_da is given). Texel
    centres at (i + ½)/Wt; v runs down the rows. boundary_mode: wrap | clamp. Gradients reach the
    texture (through every mip level) and uv; uv_da (from `interpolate`) only picks levels. `mips` passes
    a pyramid built once by `mip_pyramid` (e.g. for a fixed texture)."""
    if tex.dim() == 3:
        tex = tex[None]
    if filter_mode == "auto":
        filter_mode = "linear-mipmap-linear" if uv_da is not None else "linear"
    if filter_mode not in FILTERS or boundary_mode not in BOUNDARIES:
        raise ValueError(f"filter_mode must be one of {sorted(FILTERS)} and boundary_mode one of {sorted(BOUNDARIES)}")
    if filter_mode == "linear-mipmap-linear" and uv_da is None:
        raise ValueError("linear-mipmap-linear needs uv_da (interpolate(..., rast_db=...))")
    tex = tex.to(uv.dtype)
    da = uv_da.contiguous() if uv_da is not None else uv
    if filter_mode == "linear-mipmap-linear" and mips is None:
        sizes = _box_levels(tuple(tex.shape[1:3]), max_mip_level)
        if sizes is not None and len(sizes) > 1:
            return _TexturePyramid.apply(tex.contiguous(), uv.contiguous(), da, sizes, BOUNDARIES[boundary_mode])
    if filter_mode == "linear-mipmap-linear":
        levels = mips if mips is not None else mip_pyramid(tex, max_mip_level)
    else:
        levels = [tex]
    layout = _layout([(lv.shape[2], lv.shape[1]) for lv in levels])
    flat = torch.cat([lv.reshape(lv.shape[0], -1, lv.shape[-1]) for lv in levels], 1).contiguous()
    return _Texture.apply(flat, layout, uv.contiguous(), da, FILTERS[filter_mode], BOUNDARIES[boundary_mode])


_TOPOLOGY: dict[tuple, tuple[Tensor, Tensor]] = {}  # (ptr, shape, device) → (faces, neighbours); a few meshes


def antialias_topology(tri: Tensor) -> Tensor:
    """The triangle across each edge (F, 3) int32, −1 on boundaries. Pass the faces over welded
    positions when UV seams split vertices, so that seams are not mistaken for silhouettes."""
    return ref.edge_neighbours(tri.cpu()).to(tri.device)


class _Antialias(torch.autograd.Function):
    @staticmethod
    def forward(ctx, color, rast, pos, tri, nbr):
        out = _ops(color).antialias_fwd(color, rast, pos, tri, nbr)
        ctx.save_for_backward(color, rast, pos, tri, nbr)
        return out

    @staticmethod
    def backward(ctx, g_out):
        color, rast, pos, tri, nbr = ctx.saved_tensors
        g_color, g_pos = _ops(color).antialias_bwd(color, rast, pos, tri, nbr, g_out.contiguous())
        return g_color, None, g_pos, None, None


def antialias(color: Tensor, rast: Tensor, pos: Tensor, tri: Tensor, topology: Tensor | None = None) -> Tensor:
    """Silhouette-edge antialiasing of color (B, H, W, C) (see `mesh_reference.antialias`): gradients
    reach color and the positions of silhouette edges. topology: `antialias_topology(tri)` (computed,
    and cached per tri tensor, when not given)."""
    if pos.dim() == 2:
        pos = pos[None]
    pos = pos.expand(color.shape[0], -1, -1)
    tri32 = _tri(tri)
    if topology is None:
        key = (tri32.data_ptr(), tuple(tri32.shape), str(tri32.device))
        cached = _TOPOLOGY.get(key)
        if cached is None or not torch.equal(cached[0], tri32):  # the same faces, not just the same memory
            if len(_TOPOLOGY) >= 8:
                _TOPOLOGY.pop(next(iter(_TOPOLOGY)))
            cached = _TOPOLOGY[key] = (tri32.clone(), antialias_topology(tri32))
        topology = cached[1]
    dtype = pos.dtype
    return _Antialias.apply(color.to(dtype).contiguous(), rast.to(dtype).contiguous(), pos.contiguous(), tri32,
                            topology.to(torch.int32).contiguous())
