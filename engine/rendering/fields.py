"""Radiance fields through the occupancy grid and compositing, one camera at a time."""
from __future__ import annotations

import torch
from torch import Tensor

from engine.cameras import Cameras
from engine.rendering.output import RenderOutput

NEAR = 0.05  # nearest sample along a ray, in scene units


SAMPLES_PER_CHUNK = 1 << 21  # marched samples held at once (≈ 200 MB): rays per chunk follow from it


@torch.no_grad()
def render_field(field, grid, camera: Cameras, dt: float, background: Tensor, cone: float = 0.0,
                 samples_per_chunk: int = SAMPLES_PER_CHUNK) -> RenderOutput:
    """One camera's image of a `scenes.nerf.RadianceField` marched through its `OccupancyGrid`,
    querying only the samples that show (`render_rays_inference`: no gradients, rays retire once
    opaque). Rays go in chunks sized so that their marched samples stay near `samples_per_chunk`:
    a young unbounded field has a thousand samples a ray, a trained object a few dozen."""
    from scenes.nerf import render_rays_inference as render_rays

    width, height = camera[0].size
    o, d = camera.rays(0)
    rgb, alpha, depth = [], [], []
    k, chunk = 0, 4096
    while k < len(o):
        n = len(o[k:k + chunk])
        out = render_rays(field, grid, o[k:k + chunk], d[k:k + chunk], torch.full((n,), NEAR, device=o.device),
                          torch.full((n,), 1e4, device=o.device), dt, background, cone)
        k += n
        chunk = int(min(max(samples_per_chunk * n / max(out["samples"], 1), 1024), 1 << 17))
        rgb.append(out["rgb"])
        alpha.append(out["opacity"])
        depth.append(out["depth"])
    return RenderOutput(rgb=torch.cat(rgb).reshape(height, width, 3), alpha=torch.cat(alpha).reshape(height, width),
                        depth=torch.cat(depth).reshape(height, width))
