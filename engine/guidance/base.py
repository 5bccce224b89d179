"""The guidance interface and the SDS step every diffusion guidance shares."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from engine.cameras import Cameras
from engine.guidance.schedule import TimestepSchedule, sds_gradient, sds_loss, weight


@dataclass
class Views:
    """What a batch of renders was rendered from: the cameras, their azimuth and elevation in
    degrees (B,) (azimuth 0 looks at the object's front, along −x), and the background each
    render shows where the scene is transparent (B, H, W, 3) (a guidance whose answer is known
    composites its target over the same one). `directions` names each view's prompt when the
    method knows better than the angles (Paint-it's close view of a face: "face"; None: by the
    angles)."""

    cameras: Cameras
    azimuth: Tensor
    elevation: Tensor
    background: Tensor | None = None
    directions: list[str | None] | None = None


@dataclass
class GuidanceOutput:
    loss: Tensor  # its gradient on the renders is the guidance's
    t: Tensor  # (B,) the timesteps drawn
    info: dict = field(default_factory=dict)  # scalars for the curves (grad_norm, ...)


class Guidance:
    """`guidance(images, views, progress)`: images (B, H, W, C) in [0, 1] (C = 3, or 4 on a latent
    path), rendered with gradient; progress in [0, 1]. `channels` is the C it wants."""

    channels: int = 3
    name: str = "guidance"

    def __call__(self, images: Tensor, views: Views, progress: float) -> GuidanceOutput:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Its random state, so a resumed run draws the same timesteps and noise."""
        return {"generator": self.generator.get_state()} if hasattr(self, "generator") else {}

    def load_state_dict(self, d: dict) -> None:
        if "generator" in d and hasattr(self, "generator"):
            self.generator.set_state(d["generator"])


class DiffusionGuidance(Guidance):
    """Score Distillation Sampling over an ε-predicting model. Subclasses give `encode` (renders →
    the model's x0, with gradient) and `predict_noise` (x_t, t, views → ε̂, no gradient)."""

    def __init__(self, alphas_cumprod: Tensor, schedule: TimestepSchedule, weighting: str = "sds",
                 grad_clip: float | None = None, seed: int = 0):
        self.alphas_cumprod = alphas_cumprod.double().cpu()
        self.schedule, self.weighting, self.grad_clip = schedule, weighting, grad_clip
        self.generator = torch.Generator().manual_seed(seed)

    def encode(self, images: Tensor, views: Views) -> Tensor:
        raise NotImplementedError

    def predict_noise(self, x_t: Tensor, t: Tensor, views: Views, progress: float) -> Tensor:
        raise NotImplementedError

    def __call__(self, images: Tensor, views: Views, progress: float) -> GuidanceOutput:
        x0 = self.encode(images, views)
        B = len(x0)
        t = self.schedule.sample(B, progress, self.generator)
        a = self.alphas_cumprod[t]
        noise = torch.randn(x0.shape, generator=self.generator, dtype=torch.float32).to(x0.device)
        s = lambda v: v.float().reshape(-1, *([1] * (x0.dim() - 1))).to(x0.device)  # noqa: E731
        with torch.no_grad():
            x_t = s(a.sqrt()) * x0.detach().float() + s((1 - a).sqrt()) * noise
            eps = self.predict_noise(x_t, t, views, progress).float()
        grad = sds_gradient(eps, noise, weight(a, self.weighting).float().to(x0.device), self.grad_clip)
        loss = sds_loss(x0, grad)
        return GuidanceOutput(loss, t, {"t": float(t.float().mean()) / len(self.alphas_cumprod),
                                        "grad_norm": float(grad.flatten(1).norm(dim=1).mean())})
