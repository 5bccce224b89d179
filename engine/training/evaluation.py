"""Evaluation on a split and the camera-path video, for any method's renders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine.io import write_png

LPIPS_NOTE = "not computed: its backbone weights are not available locally"


def evenly_spaced(items: list, n: int | None) -> list:
    """n items spread evenly over `items`, first and last included (all when n is None or large)."""
    if not n or len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / max(n - 1, 1))] for i in range(n)]


def to_u8(rgb: torch.Tensor) -> np.ndarray:
    return (rgb.detach().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


def depth_png(out, path: Path) -> None:
    """16-bit depth normalised between the 1st and 99th percentile of the covered pixels."""
    depth = out.surface_depth().cpu().numpy()
    valid = out.alpha.cpu().numpy() > 0.5
    lo, hi = (np.percentile(depth[valid], [1, 99]) if valid.any() else (0.0, 1.0))
    write_png((np.clip((depth - lo) / max(hi - lo, 1e-9), 0, 1) * 65535 * valid).astype(np.uint16), path)


@torch.no_grad()
def evaluate(method, run, views: int | None = None, depth_maps: int = 8) -> dict:
    """PSNR/SSIM over `views` evenly spaced test views (default all); renders/test/NNNN.png and,
    for the first `depth_maps`, renders/depth/NNNN.png."""
    from engine.losses import psnr, ssim
    from engine.progress import track

    test = evenly_spaced(method.test_views(), views)
    if not test:
        return {}
    ps, ss = [], []
    for n, (camera, target) in enumerate(track(test, "evaluating test views")):
        out = method.render(camera)
        rgb = out.rgb.clamp(0, 1).float().cpu()
        gt = torch.as_tensor(target(), dtype=torch.float32)
        ps.append(psnr(rgb, gt))
        ss.append(float(ssim(rgb, gt)))
        write_png(to_u8(rgb), run.path("renders", "test", f"{n:04d}.png"))
        if n < depth_maps and out.depth is not None:
            depth_png(out, run.path("renders", "depth", f"{n:04d}.png"))
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "views": len(test), "lpips": None,
            "lpips_note": LPIPS_NOTE}


@torch.no_grad()
def render_video(method, path: Path, frames: int) -> Path | None:
    """H.264 of the method's camera path (`video_cameras`)."""
    from engine.io import write_mp4
    from engine.progress import track

    cams = method.video_cameras(frames) if frames > 0 else None
    if cams is None:
        return None
    write_mp4(path, (to_u8(method.render(cams[i]).rgb) for i in track(range(len(cams)), "rendering video")))
    return path
