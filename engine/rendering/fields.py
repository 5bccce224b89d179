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


def render_field_views(field, grid, cameras: Cameras, dt: float, background: Tensor, shading: str = "albedo",
                       light_dirs: Tensor | None = None, ambient: float = 0.1, normal_eps: float | None = None,
                       cone: float = 0.0) -> dict:
    """Differentiable renders of B cameras of one size for text-to-3D: rgb (B, H, W, 3) over
    `background` (B, H, W, 3), opacity (B, H, W), and the orientation loss's term (Ref-NeRF: the
    weight-summed max(0, n·d)² of normals facing away from the camera, per covered pixel) when normals were computed.
    light_dirs (B, 3): unit directions towards each view's light (Lambertian and textureless)."""
    from kernels.nerf import composite
    from engine.rendering.shading import density_normals, shade
    from scenes.nerf import exclusive_ray_sums

    width, height = cameras.size
    B, P = len(cameras), width * height
    rays = [cameras.rays(i) for i in range(B)]
    o, d = torch.cat([r[0] for r in rays]), torch.cat([r[1] for r in rays])
    ray_idx, t0, t1 = grid.march(o, d, torch.full((len(o),), NEAR, device=o.device),
                                 torch.full((len(o),), 1e4, device=o.device), dt, cone=cone)
    x = o[ray_idx] + (0.5 * (t0 + t1))[:, None] * d[ray_idx]
    sigma, albedo = field(x, d[ray_idx])
    out = {"samples": len(ray_idx)}
    colour = albedo
    if shading != "albedo" and len(x):
        with torch.no_grad():  # each sample's weight, without its own gradient (as threestudio)
            tau = (sigma * (t1 - t0)).double()
            before = torch.exp(-exclusive_ray_sums(tau, ray_idx))
            w = (before * -torch.expm1(-tau)).float()
            # normals only where the sample can show: behind an opaque surface shading changes nothing
            k = torch.nonzero(before > 1e-3)[:, 0]
        normals = density_normals(field.density, x[k], normal_eps or dt, sigma[k])
        light = light_dirs.to(x)[ray_idx[k] // P]
        colour = albedo.clone()
        colour[k] = shade(albedo[k], normals, light, shading, ambient)
        if shading == "textureless":  # hidden samples too: no albedo may leak through
            hidden = torch.ones(len(x), dtype=torch.bool, device=x.device)
            hidden[k] = False
            colour = torch.where(hidden[:, None], torch.full_like(colour, ambient), colour)
        facing = (normals * d[ray_idx[k]]).sum(-1).clamp_min(0) ** 2
        out["orient"] = (w[k] * facing).sum()
    rgb, opacity, _ = composite(sigma, colour, t0, t1, ray_idx, len(o))
    if "orient" in out:  # per ray that shows something, as threestudio normalises it
        out["orient"] = out["orient"] / (opacity.detach() > 1e-4).sum().clamp_min(1)
    bg = background.reshape(B * P, 3).to(rgb)
    out["rgb"] = (rgb + (1 - opacity[:, None]) * bg).reshape(B, height, width, 3)
    out["opacity"] = opacity.reshape(B, height, width)
    return out
