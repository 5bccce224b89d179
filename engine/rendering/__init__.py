"""Renderers with one output type: Gaussians through our rasterizer, radiance fields through the
occupancy grid and compositing; backgrounds as their own part. Training, evaluation, videos and
the viewer all render through these."""
from engine.rendering.output import RenderOutput

__all__ = ["RenderOutput"]
