"""Evaluation on a split and the camera-path video, for any method's renders."""
from __future__ import annotations

from pathlib import Path

import logging
import time

import numpy as np
import torch

from engine.io import write_png

log = logging.getLogger("lumen3d")
VIDEO_SHARE = 0.2  # the video may take this part of the training time (at least VIDEO_FLOOR seconds)...
VIDEO_FLOOR = 30.0
VIDEO_MIN_SCALE = 0.25  # ...by rendering at down to this part of the photos' resolution

LPIPS_NOTE = "not computed: its backbone weights are not available locally"


def evenly_spaced(items: list, n: int | None) -> list:
    """n items spread evenly over `items`, first and last included (all when n is None or large)."""
    if not n or len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / max(n - 1, 1))] for i in range(n)]


def to_u8(rgb: torch.Tensor) -> np.ndarray:
    return (rgb.detach().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


def depth_u16(out) -> np.ndarray:
    """16-bit depth normalised between the 1st and 99th percentile of the covered pixels."""
    depth = out.surface_depth().cpu().numpy()
    valid = out.alpha.cpu().numpy() > 0.5
    lo, hi = (np.percentile(depth[valid], [1, 99]) if valid.any() else (0.0, 1.0))
    return (np.clip((depth - lo) / max(hi - lo, 1e-9), 0, 1) * 65535 * valid).astype(np.uint16)


@torch.no_grad()
def evaluate(method, run, views: int | None = None, depth_maps: int = 8, group=None) -> dict:
    """PSNR/SSIM over `views` evenly spaced test views (default all); renders/test/NNNN.png and,
    for the first `depth_maps`, renders/depth/NNNN.png. On several processes (`group`) each renders
    every world-th view and rank 0 gathers and writes them; every process returns the metrics."""
    from engine.losses import psnr, ssim
    from engine.progress import track
    from engine.training.distributed import Processes

    group = group or Processes()
    test = evenly_spaced(method.test_views(), views)
    if not test:
        return {}
    scores, others = [], []
    rays, seconds = 0, 0.0
    mine = range(group.rank, len(test), group.world)
    for n in track(mine, "evaluating test views", disable=not group.main):
        camera, target = test[n]
        t = time.perf_counter()
        out = method.render(camera)
        seconds += time.perf_counter() - t
        rays += camera[0].size[0] * camera[0].size[1]
        if n == 0 and len(test) > 1:
            log.info("evaluating %d test views: about %.0f s (%.0f rays/s)", len(test),
                     len(mine) * seconds, rays / max(seconds, 1e-9))
        rgb = out.rgb.clamp(0, 1).float().cpu()
        gt = torch.as_tensor(target(), dtype=torch.float32)
        scores.append((n, psnr(rgb, gt), float(ssim(rgb, gt))))
        depth = depth_u16(out) if n < depth_maps and out.depth is not None else None
        if group.main:
            _write_view(run, n, to_u8(rgb), depth)
        else:
            others.append({"n": n, "rgb": torch.from_numpy(to_u8(rgb)),
                           **({"depth": torch.from_numpy(depth.astype(np.int32))} if depth is not None else {})})
    totals = torch.tensor([rays, seconds], dtype=torch.float64)
    group.all_reduce([totals])
    gathered = group.gather({"scores": scores, "views": others})
    if gathered is not None:
        scores = [s for part in gathered for s in part["scores"]]
        for part in gathered[1:]:
            for v in part["views"]:
                _write_view(run, v["n"], v["rgb"].numpy(), v["depth"].numpy().astype(np.uint16) if "depth" in v else None)
    scores = group.broadcast(sorted(scores))
    return {"psnr": float(np.mean([s[1] for s in scores])), "ssim": float(np.mean([s[2] for s in scores])),
            "views": len(test), "lpips": None, "lpips_note": LPIPS_NOTE,
            "render_rays_per_second": float(totals[0] / max(float(totals[1]), 1e-9))}


def _write_view(run, n: int, rgb: np.ndarray, depth: np.ndarray | None) -> None:
    write_png(rgb, run.path("renders", "test", f"{n:04d}.png"))
    if depth is not None:
        write_png(depth, run.path("renders", "depth", f"{n:04d}.png"))


def video_scale(cams, rays_per_second: float | None, train_seconds: float) -> float:
    """Resolution factor that keeps the video within VIDEO_SHARE of the training time (or VIDEO_FLOOR
    seconds), down to VIDEO_MIN_SCALE; 1 when the render speed is not known."""
    if not rays_per_second:
        return 1.0
    pixels = sum(i.width * i.height for i in cams.intrinsics)
    budget = max(VIDEO_FLOOR, VIDEO_SHARE * train_seconds)
    return float(np.clip((budget * rays_per_second / pixels) ** 0.5, VIDEO_MIN_SCALE, 1.0))


@torch.no_grad()
def render_video(method, path: Path, frames: int, rays_per_second: float | None = None,
                 train_seconds: float = 0.0, group=None) -> Path | None:
    """H.264 of the method's camera path (`video_cameras`). With the render speed measured in the
    evaluation, the frames are rendered smaller when the video would otherwise outlast its share of
    the run (see `video_scale`), and the log says so and how long it will take. On several
    processes each renders every world-th frame and rank 0 writes the video (the others return None)."""
    from engine.io import write_mp4
    from engine.progress import track
    from engine.training.distributed import Processes

    group = group or Processes()
    cams = method.video_cameras(frames) if frames > 0 else None
    if cams is None:
        return None
    scale = video_scale(cams, rays_per_second, train_seconds)
    if scale < 1:
        cams = cams.scaled(scale)
    if rays_per_second and group.main:
        w, h = cams[0].size
        log.info("rendering the video: %d frames at %dx%d%s, about %.0f s", len(cams), w, h,
                 f" ({scale:.2f} of the photos' size, to keep it within a share of the run)" if scale < 1 else "",
                 len(cams) * w * h / rays_per_second / group.world)
    if group.world == 1:
        write_mp4(path, (to_u8(method.render(cams[i]).rgb) for i in track(range(len(cams)), "rendering video")))
        return path
    mine = [torch.from_numpy(to_u8(method.render(cams[i]).rgb))
            for i in track(range(group.rank, len(cams), group.world), "rendering video", disable=not group.main)]
    parts = group.gather(mine)
    if parts is None:
        return None
    write_mp4(path, (parts[i % group.world][i // group.world].numpy() for i in range(len(cams))))
    return path
