"""What text-to-3D methods share: a sampler of random cameras around the object and a guidance in
place of photos (`engine.guidance`), backgrounds, the turntable video, and — with the known-object
guidance — held-out views whose answer is known, for PSNR and silhouette IoU."""
from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import Tensor

from engine.cameras import Cameras, orbit_path, sample_orbit_cameras
from engine.data.cameras import Intrinsics
from engine.guidance import Views, build_guidance
from engine.training.method import Method

log = logging.getLogger("lumen3d")

EVAL_VIEWS = 8  # held-out views of a known object
EVAL_SIZE = 128


def orbit_cameras(n: int, size: int, radius: float, fov: float, elevation: float = 15.0, offset: float = 0.0,
                  device="cpu") -> Cameras:
    """n square views round the origin (z up) at `radius`, `elevation` degrees up, the first at
    azimuth `offset` degrees (0 looks at the object's front, from +x)."""
    f = 0.5 * size / math.tan(math.radians(fov) / 2)
    e, a = math.radians(elevation), math.radians(offset)
    c2ws = orbit_path(np.zeros(3), np.array([0.0, 0.0, 1.0]), np.array([math.cos(a), math.sin(a), 0.0]),
                      radius * math.cos(e), radius * math.sin(e), n)
    return Cameras.from_c2w(c2ws, Intrinsics(size, size, f, f, size / 2, size / 2), device)


def plain_backgrounds(kind: str, n: int, size: int, gen: torch.Generator, device="cpu") -> Tensor:
    """(n, size, size, 3) training backgrounds: white, a random colour or a random grey per view (the
    object world's greys, for the built-in model)."""
    if kind == "white":
        return torch.ones(n, size, size, 3, device=device)
    if kind == "grey":
        from engine.guidance.objects.world import BACKGROUND

        lo, hi = BACKGROUND
        colours = (lo + (hi - lo) * torch.rand(n, 1, generator=gen)).expand(n, 3)
    else:
        colours = torch.rand(n, 3, generator=gen)
    return colours.to(device)[:, None, None, :].expand(n, size, size, 3)


def display_background(kind: str, device="cpu") -> Tensor:
    """What evaluation, snapshots and the video show behind the object: the middle of the world's
    greys for a grey-trained run, else white."""
    if kind == "grey":
        from engine.guidance.objects.world import BACKGROUND

        return torch.full((3,), sum(BACKGROUND) / 2, device=device)
    return torch.ones(3, device=device)


class GenerationMethod(Method):
    """`cfg`: a resolved `engine.methods.configs.GenerateConfig`. Subclasses render views
    (`render_views`) and own their parameters and optimisers."""

    def __init__(self, cfg, device: str = "cpu"):
        self.cfg, self.device = cfg, device
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.guidance = build_guidance(cfg, device)
        self.background = display_background(cfg.background, device)  # what evaluation and the video show

    # ------------------------------------------------------------------ views
    def sample_views(self, size: int) -> Views:
        cfg = self.cfg
        cams, azim, elev = sample_orbit_cameras(cfg.batch, size, size, self.gen, radius=tuple(cfg.camera_distance),
                                                elevation_deg=tuple(cfg.elevation), fov_deg=tuple(cfg.fov),
                                                device=self.device, stratified=True)
        return Views(cams, azim, elev, self.sample_background(cams))

    def sample_background(self, cams: Cameras) -> Tensor:
        """(B, H, W, 3) backgrounds of the training views (see --background)."""
        if self.cfg.background == "learned":
            return self.environment(cams)
        return plain_backgrounds(self.cfg.background, len(cams), cams.size[0], self.gen, self.device)

    def environment(self, cams: Cameras) -> Tensor:
        raise NotImplementedError("a learned background needs a representation that has one")

    def render_views(self, views: Views, fraction: float) -> tuple[Tensor, dict]:
        """(B, H, W, C) renders with gradient, and extra losses/scalars {name: tensor}."""
        raise NotImplementedError

    def guide(self, views: Views, fraction: float) -> tuple[Tensor, dict]:
        """Render the views and ask the guidance: the SDS loss and the step's scalars."""
        images, extra = self.render_views(views, fraction)
        out = self.guidance(images, views, fraction)
        return out.loss, {**out.info, **extra}

    def describe(self, s: dict) -> str:
        return f"loss {s['loss']:.4g}  t {s['t']:.3f}"

    # ------------------------------------------------------------------ results
    def orbit(self, n: int, size: int, elevation: float = 15.0, offset: float = 0.0) -> Cameras:
        """n views round the object at the mid camera distance and field of view."""
        cfg = self.cfg
        return orbit_cameras(n, size, float(np.mean(cfg.camera_distance)), float(np.mean(cfg.fov)), elevation, offset,
                             self.device)

    def video_cameras(self, frames: int) -> Cameras:
        return self.orbit(frames, 256)

    def test_views(self):
        """Held-out views of the known object (between the turntable's azimuths), over white."""
        if self.guidance.name != "known-object":
            return []
        cams = self.orbit(EVAL_VIEWS, EVAL_SIZE, elevation=20.0, offset=180.0 / EVAL_VIEWS)
        obj = self.guidance.object
        return [(cams[i], lambda i=i: obj.composite(cams[i], None)[0].cpu()) for i in range(len(cams))]

    @torch.no_grad()
    def silhouette_iou(self) -> float | None:
        """Intersection over union of the rendered and the known object's silhouettes (alpha > 0.5)
        over the held-out views."""
        if self.guidance.name != "known-object":
            return None
        cams = self.orbit(EVAL_VIEWS, EVAL_SIZE, elevation=20.0, offset=180.0 / EVAL_VIEWS)
        inter = union = 0
        for i in range(len(cams)):
            mine = self.render(cams[i]).alpha.cpu() > 0.5
            truth = self.guidance.object.render(cams[i])[1][0].cpu() > 0.5
            inter += int((mine & truth).sum())
            union += int((mine | truth).sum())
        return inter / max(union, 1)

    def summary(self, train_seconds: float) -> dict:
        iou = self.silhouette_iou()
        return {"prompt": self.cfg.prompt, "guidance": self.guidance.name, "representation": self.cfg.representation,
                "guidance_size": getattr(self.guidance, "guidance_size", None),
                **({"silhouette_iou": iou} if iou is not None else {})}
