"""Backgrounds, a part of their own: what shows where the scene is transparent, and what RGBA
photos are composited over so that the target matches the render."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from engine.data.images import composite

__all__ = ["Background", "LearnedBackground", "RandomBackground", "SolidBackground", "composite"]


class Background(nn.Module):
    """`sample(shape, generator)` gives the colours (*shape, 3) of one render's background: one
    colour for a rasterised image (shape ()), one per ray for a batch of rays (shape (R,))."""

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError


class SolidBackground(Background):
    def __init__(self, colour):
        super().__init__()
        self.register_buffer("colour", torch.as_tensor(colour, dtype=torch.float32).reshape(3))

    def sample(self, shape=(), generator=None) -> Tensor:
        return self.colour.expand(*shape, 3)


class RandomBackground(Background):
    """A random colour each draw, so a field cannot paint the background into the scene (RGBA
    training photos; text-to-3D)."""

    def __init__(self, device="cpu"):
        super().__init__()
        self.register_buffer("_anchor", torch.zeros(0, device=device), persistent=False)

    def sample(self, shape=(), generator=None) -> Tensor:
        return torch.rand(*shape, 3, generator=generator).to(self._anchor.device)


class LearnedBackground(Background):
    """One colour, optimised with the scene (DreamFusion's simplest background)."""

    def __init__(self, initial=(0.5, 0.5, 0.5)):
        super().__init__()
        init = torch.as_tensor(initial, dtype=torch.float32).clamp(1e-3, 1 - 1e-3)
        self.logit = nn.Parameter(torch.log(init / (1 - init)))

    def sample(self, shape=(), generator=None) -> Tensor:
        return torch.sigmoid(self.logit).expand(*shape, 3)
