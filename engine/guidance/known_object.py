"""A guidance whose answer is known: the optimal denoiser of one object's renders.

For a single target image y, the best possible noise prediction is ε* = (x_t − √ᾱ_t·y)/√(1 − ᾱ_t).
With y the render of a known object from the very camera of each render, SDS must pull the scene
to that object, which proves the whole text-to-3D loop (cameras, renderer, SDS step, optimiser,
densification) without a diffusion model. The object: three spheres (a snowman with a nose that
marks its front, azimuth 0 = +x), coloured in bands and halves, ray-cast exactly and
supersampled so that its edges are antialiased as a renderer's are.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from engine.cameras import Cameras
from engine.guidance.base import DiffusionGuidance, Views
from engine.guidance.schedule import TimestepSchedule, scaled_linear_alphas_cumprod

# centre, radius
SPHERES = (((0.0, 0.0, -0.25), 0.45), ((0.0, 0.0, 0.38), 0.28), ((0.3, 0.0, 0.4), 0.08))


def _albedo(k: int, x: Tensor) -> Tensor:
    """Colour of sphere k at surface points x (N, 3)."""
    z, y = x[:, 2], x[:, 1]
    if k == 0:  # a red body with a white band around it
        band = ((z + 0.25).abs() < 0.1).float()[:, None]
        return band * x.new_tensor([0.95, 0.95, 0.9]) + (1 - band) * x.new_tensor([0.8, 0.15, 0.1])
    if k == 1:  # a head, blue on one side and yellow on the other
        left = (y > 0).float()[:, None]
        return left * x.new_tensor([0.15, 0.3, 0.85]) + (1 - left) * x.new_tensor([0.95, 0.8, 0.1])
    return x.new_tensor([0.1, 0.7, 0.2]).expand(len(x), 3)  # a green nose


class KnownObject:
    """The object's albedo renders: `render(cameras)` → rgb (B, H, W, 3), alpha (B, H, W)."""

    extent = 0.75  # every sphere lies within this distance of the origin

    def __init__(self, supersample: int = 3):
        self.supersample = supersample

    @torch.no_grad()
    def render(self, cameras: Cameras) -> tuple[Tensor, Tensor]:
        s = self.supersample
        rgbs, alphas = [], []
        for i in range(len(cameras)):
            w, h = cameras[i].size
            cam = cameras[i].scaled(s) if s > 1 else cameras[i]
            o, d = (t.double() for t in cam.rays(0))
            rgb, hit = self._cast(o, d)
            sw, sh = cam.size
            rgb = rgb.reshape(sh, sw, 3).permute(2, 0, 1)[None]
            hit = hit.reshape(sh, sw)[None, None].double()
            pool = lambda t: torch.nn.functional.adaptive_avg_pool2d(t, (h, w))  # noqa: E731
            a = pool(hit)[0, 0]
            c = pool(rgb * hit)[0].permute(1, 2, 0) / a.clamp_min(1e-9)[..., None]
            rgbs.append(c.float())
            alphas.append(a.float())
        dev = cameras.device
        return torch.stack(rgbs).to(dev), torch.stack(alphas).to(dev)

    def _cast(self, o: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        best = torch.full((len(o),), math.inf, dtype=o.dtype)
        which = torch.full((len(o),), -1, dtype=torch.long)
        for k, (c, r) in enumerate(SPHERES):
            oc = o - o.new_tensor(c)
            b = (oc * d).sum(1)
            disc = b * b - ((oc * oc).sum(1) - r * r)
            t = -b - disc.clamp_min(0).sqrt()
            hit = (disc > 0) & (t > 0) & (t < best)
            best = torch.where(hit, t, best)
            which = torch.where(hit, torch.full_like(which, k), which)
        rgb = torch.zeros(len(o), 3, dtype=o.dtype)
        x = o + best.clamp(max=1e9)[:, None] * d
        for k in range(len(SPHERES)):
            sel = which == k
            if sel.any():
                rgb[sel] = _albedo(k, x[sel]).to(o.dtype)
        return rgb, which >= 0

    def composite(self, cameras: Cameras, background: Tensor | None) -> Tensor:
        """Renders over `background` (B, H, W, 3) (white without one)."""
        rgb, alpha = self.render(cameras)
        bg = torch.ones_like(rgb) if background is None else background.to(rgb)
        return rgb * alpha[..., None] + bg * (1 - alpha[..., None])


class OracleGuidance(DiffusionGuidance):
    """SDS with the optimal denoiser of a known target image for each view, `target(views)` →
    (B, H, W, 3) in [0, 1], in pixel space (x0 = 2·image − 1). Same schedules and weightings as
    Stable Diffusion's, with its noise schedule. Paint-it's known answer is a textured mesh's own
    render."""

    name = "known-object"

    def __init__(self, target, schedule: TimestepSchedule | None = None, weighting: str = "sds",
                 grad_clip: float | None = None, seed: int = 0):
        ac = scaled_linear_alphas_cumprod()
        super().__init__(ac, schedule or TimestepSchedule(len(ac)), weighting, grad_clip, seed)
        self.target = target

    @classmethod
    def from_config(cls, cfg, target, device: str = "cpu") -> "OracleGuidance":
        return cls(target, TimestepSchedule(1000, tuple(cfg.t_range), cfg.t_anneal, tuple(cfg.t_final)), cfg.weighting,
                   cfg.grad_clip, cfg.seed)

    def encode(self, images: Tensor, views: Views) -> Tensor:
        return (2 * images - 1).permute(0, 3, 1, 2)

    @torch.no_grad()
    def predict_noise(self, x_t: Tensor, t: Tensor, views: Views, progress: float) -> Tensor:
        y = (2 * self.target(views) - 1).permute(0, 3, 1, 2).to(x_t)
        a = self.alphas_cumprod[t.cpu()].float().to(x_t.device).reshape(-1, 1, 1, 1)
        return (x_t - a.sqrt() * y) / (1 - a).sqrt()


class KnownObjectGuidance(OracleGuidance):
    """The oracle of the built-in object (`KnownObject`), over each view's background."""

    def __init__(self, schedule: TimestepSchedule | None = None, weighting: str = "sds",
                 grad_clip: float | None = None, seed: int = 0):
        self.object = KnownObject()
        super().__init__(lambda views: self.object.composite(views.cameras, views.background), schedule, weighting,
                         grad_clip, seed)

    @classmethod
    def from_config(cls, cfg, device: str = "cpu") -> "KnownObjectGuidance":
        return cls(TimestepSchedule(1000, tuple(cfg.t_range), cfg.t_anneal, tuple(cfg.t_final)), cfg.weighting,
                   cfg.grad_clip, cfg.seed)
