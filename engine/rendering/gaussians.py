"""Gaussians through our rasterizer: the one place where scene parameters meet the kernel."""
from __future__ import annotations

import torch
from torch import Tensor

from engine.cameras import Cameras
from engine.rendering.output import RenderOutput


def sh_of(params: dict[str, Tensor]) -> tuple[Tensor, int]:
    """The (N, K, 3) SH coefficients of `scenes.gaussians` parameters and their degree."""
    sh = torch.cat([params["sh_dc"], params["sh_rest"]], 1)
    return sh, int(round(sh.shape[1] ** 0.5)) - 1


def render_gaussians(params: dict[str, Tensor], camera: Cameras, background: Tensor, sh_degree: int | None = None,
                     antialiased: bool = False, absgrad: bool = False) -> RenderOutput:
    """Render one camera (a batch of one) of `scenes.gaussians` parameters over `background` (3,).
    `sh_degree` (default: all the parameters hold) limits the SH bands used, as training ramps them
    up. The rasterizer's projection outputs (means2d, radii, ...) are in `info`, with the image
    size, for densification strategies."""
    from kernels.splat import rasterize_gaussians

    if len(camera) != 1:
        raise ValueError(f"render_gaussians renders one camera at a time, got {len(camera)}")
    width, height = camera.size
    sh, degree = sh_of(params)
    out = rasterize_gaussians(params["means"], params["quats"], params["log_scales"],
                              torch.sigmoid(params["opacity_logits"]), sh, camera.viewmats[0].to(sh.device),
                              camera.K[0].to(sh.device), width, height,
                              sh_degree=degree if sh_degree is None else sh_degree, background=background,
                              antialiased=antialiased, absgrad=absgrad)
    info = {k: v for k, v in out.items() if k not in ("rgb", "alpha", "depth")}
    info["width"], info["height"] = width, height
    return RenderOutput(rgb=out["rgb"], alpha=out["alpha"], depth=out["depth"], info=info)
