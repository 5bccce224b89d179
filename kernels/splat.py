"""Differentiable Gaussian splatting on the native kernels.

`rasterize_gaussians` is the one call a trainer needs; it has the same signature and results
as `splat_reference.render_gaussians`, which it is tested against. The small ops (projection,
SH colour, binning, compositing) are exposed too, each as an autograd-aware function.
"""
from __future__ import annotations

import torch
from torch import Tensor

from kernels._build import cpu_ops, cuda_ops


def _ops(t: Tensor):
    """The native module for the tensor's device: C++/OpenMP on CPU, CUDA on NVIDIA GPUs."""
    if t.device.type == "cpu":
        return cpu_ops()
    if t.device.type == "cuda":
        return cuda_ops()
    raise NotImplementedError(f"no native kernels for device {t.device.type!r} (CPU and CUDA only)")


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, log_scales, viewmat, K, width, height, near, far, eps2d, antialiased):
        args = (width, height, near, far, eps2d, antialiased)
        means2d, conics, depths, radii, comp = _ops(means).project_fwd(
            means.contiguous(), quats.contiguous(), log_scales.contiguous(), viewmat, K, *args)
        ctx.save_for_backward(means, quats, log_scales, viewmat, K, radii)
        ctx.args = args
        ctx.mark_non_differentiable(radii)
        return means2d, conics, depths, radii, comp

    @staticmethod
    def backward(ctx, v_means2d, v_conics, v_depths, _v_radii, v_comp):
        means, quats, log_scales, viewmat, K, radii = ctx.saved_tensors
        grads = [g.contiguous() if g is not None else torch.zeros(s, dtype=means.dtype, device=means.device)
                 for g, s in ((v_means2d, (len(means), 2)), (v_conics, (len(means), 3)),
                              (v_depths, (len(means),)), (v_comp, (len(means),)))]
        v_means, v_quats, v_ls, v_view = _ops(means).project_bwd(
            means.contiguous(), quats.contiguous(), log_scales.contiguous(), viewmat, K, *ctx.args, radii, *grads,
            ctx.needs_input_grad[3])
        return v_means, v_quats, v_ls, (v_view.to(viewmat.dtype) if ctx.needs_input_grad[3] else None), \
            None, None, None, None, None, None, None


class _SH(torch.autograd.Function):
    @staticmethod
    def forward(ctx, coeffs, means, campos, degree):
        ctx.save_for_backward(coeffs, means, campos)
        ctx.degree = degree
        return _ops(coeffs).sh_fwd(coeffs.contiguous(), means.contiguous(), campos, degree)

    @staticmethod
    def backward(ctx, v_colors):
        coeffs, means, campos = ctx.saved_tensors
        v_coeffs, v_means, v_campos = _ops(coeffs).sh_bwd(coeffs.contiguous(), means.contiguous(), campos,
                                                           ctx.degree, v_colors.contiguous())
        return v_coeffs, v_means, v_campos.to(campos.dtype), None


class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, depths, background, bins, width, height, absgrad_out):
        tile_offsets, ids, g_offsets, g_inters = bins
        rgb, alpha, depth, last = _ops(colors).raster_fwd(means2d.contiguous(), conics.contiguous(),
                                                          colors.contiguous(), opacities.contiguous(),
                                                          depths.contiguous(), background.contiguous(),
                                                          tile_offsets, ids, width, height)
        ctx.save_for_backward(means2d, conics, colors, opacities, depths, background, tile_offsets, ids,
                              g_offsets, g_inters, alpha, last)
        ctx.size = (width, height)
        ctx.absgrad_out = absgrad_out
        return rgb, alpha, depth

    @staticmethod
    def backward(ctx, v_rgb, v_alpha, v_depth):
        (means2d, conics, colors, opacities, depths, background, tile_offsets, ids, g_offsets, g_inters, alpha,
         last) = ctx.saved_tensors
        z = lambda g, like: g.contiguous() if g is not None else torch.zeros_like(like)  # noqa: E731
        v_means2d, v_conics, v_colors, v_opac, v_depths, absgrad = _ops(colors).raster_bwd(
            means2d.contiguous(), conics.contiguous(), colors.contiguous(), opacities.contiguous(),
            depths.contiguous(), background.contiguous(), tile_offsets, ids, g_offsets, g_inters, *ctx.size,
            alpha, last, z(v_rgb, torch.empty(alpha.shape + colors.shape[1:], dtype=alpha.dtype, device=alpha.device)),
            z(v_alpha, alpha), z(v_depth, alpha), ctx.absgrad_out is not None)
        if ctx.absgrad_out is not None:
            ctx.absgrad_out += absgrad
        return v_means2d, v_conics, v_colors, v_opac, v_depths, None, None, None, None, None


def project_gaussians(means, quats, log_scales, viewmat, K, width, height, near=0.01, far=1e10, eps2d=0.3,
                      antialiased=False) -> dict[str, Tensor]:
    """Native twin of `splat_reference.project_gaussians` (same arguments and results)."""
    means2d, conics, depths, radii, comp = _Project.apply(means, quats, log_scales, viewmat, K, int(width),
                                                          int(height), float(near), float(far), float(eps2d),
                                                          bool(antialiased))
    return {"means2d": means2d, "conics": conics, "depths": depths, "radii": radii, "compensation": comp}


def sh_to_color(coeffs, means, campos, degree: int) -> Tensor:
    """Native twin of `splat_reference.sh_to_color`."""
    n = (degree + 1) ** 2
    if not 0 <= degree <= 3 or coeffs.shape[1] < n:
        raise ValueError(f"SH degree {degree} needs 0..3 and {n} coefficients per channel, got {coeffs.shape[1]}")
    return _SH.apply(coeffs, means, campos, degree)


def bin_gaussians(means2d, radii, depths, width, height):
    """Native twin of `splat_reference.bin_gaussians`, plus the per-Gaussian inverse map:
    returns (tile_offsets, ids, g_offsets, g_inters)."""
    return _ops(means2d).bin_gaussians(means2d.detach().contiguous(), radii.contiguous(),
                                       depths.detach().contiguous(), int(width), int(height))


def rasterize(means2d, conics, colors, opacities, depths, radii, width, height, background=None,
              absgrad_out: Tensor | None = None) -> dict[str, Tensor]:
    """Native twin of `splat_reference.rasterize`. When `absgrad_out` (N, 2) is given, the
    backward adds Σ over pixels of |∂L/∂mean2d| to it (the densification statistic)."""
    bg = (torch.zeros(colors.shape[1], dtype=colors.dtype, device=colors.device) if background is None
          else background.to(colors))
    bins = bin_gaussians(means2d, radii, depths, width, height)
    rgb, alpha, depth = _Rasterize.apply(means2d, conics, colors, opacities, depths, bg, bins, int(width),
                                         int(height), absgrad_out)
    return {"rgb": rgb, "alpha": alpha, "depth": depth}


def rasterize_gaussians(means, quats, log_scales, opacities, colors_or_sh, viewmat, K, width, height,
                        sh_degree=None, background=None, near=0.01, far=1e10, eps2d=0.3, antialiased=False,
                        absgrad: bool = False) -> dict[str, Tensor]:
    """Differentiable render of 3D Gaussians: the trainer's one call.

    means (N, 3), quats (N, 4) wxyz, log_scales (N, 3), opacities (N,) in [0, 1],
    colors_or_sh (N, C) colours or (N, K, 3) SH coefficients with `sh_degree`; viewmat (4, 4)
    world-to-camera (OpenCV axes), K (3, 3). Returns rgb (H, W, C), alpha (H, W), depth (H, W)
    (alpha-weighted; divide by alpha for the expected depth), the projection's outputs, and
    with `absgrad` a zero (N, 2) tensor 'means2d_absgrad' that backward fills.
    """
    proj = project_gaussians(means, quats, log_scales, viewmat, K, width, height, near, far, eps2d, antialiased)
    if sh_degree is None:
        colors = colors_or_sh
    else:
        campos = -viewmat[:3, :3].T @ viewmat[:3, 3]
        colors = sh_to_color(colors_or_sh, means, campos, sh_degree)
    absgrad_out = torch.zeros(len(means), 2, dtype=means.dtype, device=means.device) if absgrad else None
    out = rasterize(proj["means2d"], proj["conics"], colors, opacities * proj["compensation"], proj["depths"],
                    proj["radii"], width, height, background, absgrad_out)
    out.update(proj)
    if absgrad:
        out["means2d_absgrad"] = absgrad_out
    return out
