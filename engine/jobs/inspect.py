"""`lumen3d inspect`: load any dataset and print what is in it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import tyro


@dataclass
class InspectJob:
    """Load a dataset (Blender, nerfstudio, COLMAP or LLFF) and summarise it."""

    path: tyro.conf.Positional[Path]
    """Dataset folder (or a transforms.json)."""
    format: Literal["auto", "blender", "nerfstudio", "colmap", "llff"] = "auto"
    downscale: Optional[float] = None
    """Downscale factor (LLFF: relative to the full-resolution photos)."""
    strict: bool = False
    """Refuse a transforms.json that lists frames whose image is missing."""
    check_images: bool = False
    """Decode every image (slower): finds corrupt files."""
    debug: bool = False
    """Show full tracebacks."""

    def check(self) -> None:
        from engine.training.options import DatasetOptions

        DatasetOptions.check(self)

    def run(self) -> None:
        from rich.table import Table

        from engine.data import load_dataset
        from engine.progress import console, track

        scene = load_dataset(self.path, self.format, self.downscale, strict=self.strict)
        for line in scene.warnings:
            console.print(f"[yellow]warning:[/] {line}", markup=True, highlight=False)
        if self.check_images:
            for i in track(range(len(scene.frames)), "decoding images"):
                scene.image_rgba(i)
        t = Table(title=f"{scene.root} ({scene.format})", show_header=False)
        t.add_row("frames", str(len(scene.frames)))
        for name, idx in scene.splits.items():
            t.add_row(f"split {name}", str(len(idx)))
        for intr in sorted({f.intrinsics for f in scene.frames}, key=str)[:4]:
            t.add_row("camera", f"{intr.model} {intr.width}x{intr.height} f=({intr.fx:.2f}, {intr.fy:.2f}) "
                                f"c=({intr.cx:.2f}, {intr.cy:.2f}) dist={list(intr.dist)}")
        centers = np.array([f.center for f in scene.frames])
        t.add_row("camera centres", f"min {np.round(centers.min(0), 3).tolist()} max {np.round(centers.max(0), 3).tolist()}")
        t.add_row("points", "none" if scene.points is None else str(len(scene.points)))
        box = scene.extra.get("scene_box")
        if box is not None:
            t.add_row("scene box", f"centre {np.round(box['centre'], 3).tolist()} half-size {box['half'][0]:.3f} "
                                   f"({'unbounded beyond it' if box['unbounded'] else 'bounded'}; aabb_scale "
                                   f"{box['aabb_scale']:g})")
        console.print(t)
