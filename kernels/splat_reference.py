"""Plain-torch reference of the Gaussian-splatting ops: the specification.

The native kernels (C++/OpenMP and CUDA) must match these functions, outputs and gradients,
in float64. Gradients here come from autograd. Everything is written for clarity, not speed.

Conventions: `viewmat` is world-to-camera (4×4, OpenCV axes: x right, y down, z forward);
`K` is the 3×3 calibration; pixel (i, j) has its centre at (i + 0.5, j + 0.5); quaternions are
(w, x, y, z) and need not be normalised; scales are given as logarithms.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

TILE = 16
ALPHA_MAX = 0.99  # one Gaussian never makes a pixel fully opaque
ALPHA_MIN = 1.0 / 255.0  # fainter contributions are skipped
T_MIN = 1e-4  # compositing stops before transmittance would fall below this
SIGMA_EXTENT = 3.0  # screen radius = 3σ of the larger 2D axis

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """(N, 4) wxyz, any norm → (N, 3, 3)."""
    w, x, y, z = (quats / quats.norm(dim=-1, keepdim=True)).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(-1, 3, 3)


def covariance_3d(quats: Tensor, log_scales: Tensor) -> Tensor:
    """Σ = R S Sᵀ Rᵀ. (N, 4), (N, 3) → (N, 3, 3)."""
    M = quat_to_rotmat(quats) * torch.exp(log_scales)[:, None, :]
    return M @ M.transpose(1, 2)


def project_gaussians(means: Tensor, quats: Tensor, log_scales: Tensor, viewmat: Tensor, K: Tensor,
                      width: int, height: int, near: float = 0.01, far: float = 1e10, eps2d: float = 0.3,
                      antialiased: bool = False) -> dict[str, Tensor]:
    """EWA projection of 3D Gaussians to the image.

    Returns (N = number of Gaussians):
      means2d (N, 2) pixel coordinates; conics (N, 3) the upper triangle (a, b, c) of the
      inverse 2D covariance; depths (N,) camera z; radii (N,) int32 screen radius in pixels,
      0 for culled Gaussians (outside [near, far], degenerate, or entirely off-screen);
      compensation (N,) the Mip-Splatting opacity factor sqrt(det Σ2D / det(Σ2D + eps2d·I))
      when `antialiased`, else ones. The low-pass eps2d (0.3 px²) is always added.
    """
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    p = means @ R.T + t
    x, y, z = p.unbind(-1)
    in_depth = (z > near) & (z < far)
    z = torch.where(in_depth, z, torch.ones_like(z))  # keeps culled rows finite, gradients zero
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    # As in 3DGS: the Jacobian is taken at the point clamped to 1.3× the field of view, so
    # Gaussians far outside the image do not get huge, unstable footprints.
    lim_x_neg, lim_x_pos = cx / fx + 0.3 * width / (2 * fx), (width - cx) / fx + 0.3 * width / (2 * fx)
    lim_y_neg, lim_y_pos = cy / fy + 0.3 * height / (2 * fy), (height - cy) / fy + 0.3 * height / (2 * fy)
    tx = z * torch.minimum(torch.maximum(x / z, -lim_x_neg), lim_x_pos)
    ty = z * torch.minimum(torch.maximum(y / z, -lim_y_neg), lim_y_pos)
    zero = torch.zeros_like(z)
    J = torch.stack([fx / z, zero, -fx * tx / (z * z), zero, fy / z, -fy * ty / (z * z)], -1).reshape(-1, 2, 3)
    cov_cam = R @ covariance_3d(quats, log_scales) @ R.T
    cov2d = J @ cov_cam @ J.transpose(1, 2)
    a, b, c = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
    det_raw = a * c - b * b
    a, c = a + eps2d, c + eps2d
    det = a * c - b * b
    ok = in_depth & (det > 0)
    det_safe = torch.where(ok, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], -1)
    if antialiased:
        compensation = torch.sqrt(torch.clamp(det_raw / det_safe, min=0.0))
    else:
        compensation = torch.ones_like(det)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], -1)
    half_trace = 0.5 * (a + c)
    lambda_max = half_trace + torch.sqrt(torch.clamp(half_trace * half_trace - det_safe, min=0.1))
    radius = torch.ceil(SIGMA_EXTENT * torch.sqrt(lambda_max)).detach()
    mx, my = means2d.detach().unbind(-1)
    on_screen = (mx + radius > 0) & (mx - radius < width) & (my + radius > 0) & (my - radius < height)
    radii = torch.where(ok & on_screen & (radius > 0), radius, torch.zeros_like(radius)).to(torch.int32)
    return {"means2d": means2d, "conics": conics, "depths": p[:, 2], "radii": radii,
            "compensation": compensation}


def sh_basis(dirs: Tensor, degree: int) -> Tensor:
    """Real SH basis (3DGS sign convention) at unit directions. (N, 3) → (N, (degree+1)²)."""
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be 0..3, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree > 0:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree > 1:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [SH_C2[0] * xy, SH_C2[1] * yz, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * xz, SH_C2[4] * (xx - yy)]
    if degree > 2:
        out += [SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * xy * z, SH_C3[2] * y * (4 * zz - xx - yy),
                SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
                SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy)]
    return torch.stack(out, -1)


def sh_to_color(coeffs: Tensor, means: Tensor, campos: Tensor, degree: int) -> Tensor:
    """View-dependent colour: coeffs (N, K, 3) with K ≥ (degree+1)², evaluated along the unit
    direction from the camera centre `campos` (3,) to each mean (N, 3); +0.5 and clamped at 0
    as in 3DGS. → (N, 3)."""
    n = (degree + 1) ** 2
    if coeffs.shape[1] < n:
        raise ValueError(f"SH degree {degree} needs {n} coefficients per channel, got {coeffs.shape[1]}")
    d = means - campos
    d = d / d.norm(dim=-1, keepdim=True)
    color = (sh_basis(d, degree)[:, :, None] * coeffs[:, :n]).sum(1)
    return torch.clamp(color + 0.5, min=0.0)


def tile_rects(means2d: Tensor, radii: Tensor, width: int, height: int, tile: int = TILE) -> Tensor:
    """Tiles each Gaussian touches: (N, 4) int64 [x0, y0, x1, y1), empty for radius 0."""
    tiles_x, tiles_y = math.ceil(width / tile), math.ceil(height / tile)
    m = means2d.detach()
    r = radii.to(m.dtype)
    x0 = torch.clamp(torch.floor((m[:, 0] - r) / tile), 0, tiles_x)
    x1 = torch.clamp(torch.ceil((m[:, 0] + r) / tile), 0, tiles_x)
    y0 = torch.clamp(torch.floor((m[:, 1] - r) / tile), 0, tiles_y)
    y1 = torch.clamp(torch.ceil((m[:, 1] + r) / tile), 0, tiles_y)
    rect = torch.stack([x0, y0, x1, y1], -1).to(torch.int64)
    rect[radii <= 0] = 0
    return rect


def bin_gaussians(means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int,
                  tile: int = TILE) -> tuple[Tensor, Tensor]:
    """Per-tile lists of Gaussians, front to back.

    Returns tile_offsets (T + 1,) and gaussian_ids (M,): tile k (row-major, T = tiles_x ·
    tiles_y) holds gaussian_ids[tile_offsets[k]:tile_offsets[k+1]], sorted by depth (ties by
    index)."""
    tiles_x, tiles_y = math.ceil(width / tile), math.ceil(height / tile)
    rect = tile_rects(means2d, radii, width, height, tile)
    order = torch.argsort(depths.detach(), stable=True)
    lists = [[] for _ in range(tiles_x * tiles_y)]
    for g in order.tolist():
        x0, y0, x1, y1 = rect[g].tolist()
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                lists[ty * tiles_x + tx].append(g)
    counts = torch.tensor([0] + [len(ls) for ls in lists], dtype=torch.int64)
    ids = torch.tensor([g for ls in lists for g in ls], dtype=torch.int64)
    return torch.cumsum(counts, 0), ids


def rasterize(means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor, depths: Tensor,
              radii: Tensor, width: int, height: int, background: Tensor | None = None,
              tile: int = TILE) -> dict[str, Tensor]:
    """Front-to-back alpha compositing of the binned Gaussians, tile by tile.

    At pixel centre p, Gaussian g has α = min(ALPHA_MAX, opacity_g · exp(-σ)), with
    σ = ½(a·dx² + c·dy²) + b·dx·dy for d = p − mean2d_g; it is skipped when σ < 0 or
    α < ALPHA_MIN. Compositing stops before the first Gaussian that would bring the
    transmittance below T_MIN (that Gaussian is not blended).
    Returns rgb (H, W, C) = Σ wᵢcᵢ + T·background, alpha (H, W) = 1 − T, and depth (H, W) =
    Σ wᵢzᵢ, the alpha-weighted depth (divide by alpha for the expected depth).
    """
    dtype, C = colors.dtype, colors.shape[1]
    bg = torch.zeros(C, dtype=dtype) if background is None else background.to(dtype)
    offsets, ids = bin_gaussians(means2d, radii, depths, width, height, tile)
    tiles_x, tiles_y = math.ceil(width / tile), math.ceil(height / tile)
    rows = []
    for ty in range(tiles_y):
        row = []
        for tx in range(tiles_x):
            h, w = min(tile, height - ty * tile), min(tile, width - tx * tile)
            py, px = torch.meshgrid(torch.arange(h, dtype=dtype) + ty * tile + 0.5,
                                    torch.arange(w, dtype=dtype) + tx * tile + 0.5, indexing="ij")
            k = ty * tiles_x + tx
            g = ids[offsets[k]:offsets[k + 1]]
            dx = px.reshape(-1, 1) - means2d[g, 0]
            dy = py.reshape(-1, 1) - means2d[g, 1]
            sigma = 0.5 * (conics[g, 0] * dx * dx + conics[g, 2] * dy * dy) + conics[g, 1] * dx * dy
            alpha = torch.clamp(opacities[g] * torch.exp(-sigma), max=ALPHA_MAX)
            alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
            one_minus = 1.0 - alpha
            T_before = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), one_minus[:, :-1]], 1), 1)
            blended = (T_before * one_minus >= T_MIN).detach()  # monotone: once off, off
            weights = alpha * T_before * blended
            T_final = torch.prod(torch.where(blended, one_minus, torch.ones_like(one_minus)), 1)
            rgb = weights @ colors[g] + T_final[:, None] * bg
            depth = weights @ depths[g]
            row.append(torch.cat([rgb, (1 - T_final)[:, None], depth[:, None]], 1).reshape(h, w, C + 2))
        rows.append(torch.cat(row, 1))
    out = torch.cat(rows, 0)
    return {"rgb": out[..., :C], "alpha": out[..., C], "depth": out[..., C + 1]}


def render_gaussians(means: Tensor, quats: Tensor, log_scales: Tensor, opacities: Tensor, colors_or_sh: Tensor,
                     viewmat: Tensor, K: Tensor, width: int, height: int, sh_degree: int | None = None,
                     background: Tensor | None = None, near: float = 0.01, far: float = 1e10, eps2d: float = 0.3,
                     antialiased: bool = False) -> dict[str, Tensor]:
    """Differentiable render: projection → colour (SH when `sh_degree` is given, else
    colors_or_sh is (N, C)) → binning → compositing. `opacities` are in [0, 1]."""
    proj = project_gaussians(means, quats, log_scales, viewmat, K, width, height, near, far, eps2d, antialiased)
    if sh_degree is None:
        colors = colors_or_sh
    else:
        campos = -viewmat[:3, :3].T @ viewmat[:3, 3]
        colors = sh_to_color(colors_or_sh, means, campos, sh_degree)
    out = rasterize(proj["means2d"], proj["conics"], colors, opacities * proj["compensation"], proj["depths"],
                    proj["radii"], width, height, background)
    return {**out, **proj}
