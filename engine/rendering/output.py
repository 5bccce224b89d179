"""What every renderer returns."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class RenderOutput:
    """One camera's image. rgb (H, W, 3) over the background; alpha (H, W) coverage; depth (H, W)
    alpha-weighted camera depth (divide by alpha for the surface's); normals (H, W, 3) when the
    renderer has them. `info` holds what a renderer's own training needs (e.g. the Gaussians'
    screen-space means and radii for densification)."""

    rgb: Tensor
    alpha: Tensor
    depth: Tensor | None = None
    normals: Tensor | None = None
    info: dict = field(default_factory=dict)

    def surface_depth(self) -> Tensor:
        """Depth of the rendered surface, where alpha > 0."""
        return self.depth / self.alpha.clamp_min(1e-6)
