"""Options of the training loop, shared by every method. Light: no torch, so `--help` is fast."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import tyro

from engine.runs import RunOptions, may_change


@dataclass(kw_only=True)
class TrainOptions(RunOptions):
    """The budget, checkpoints and outputs of a training run."""

    max_steps: int = 3000
    max_minutes: Optional[float] = may_change(None)
    """Stop training after this many minutes (evaluation and exports still run); the schedules
    follow whichever budget runs out first."""
    checkpoint_every: int = may_change(500)
    resume: bool = may_change(False)
    """Continue from the run directory's last checkpoint (options must match, except the budget
    and outputs)."""
    eval_views: Optional[int] = may_change(None)
    """Evaluate on this many test views (evenly spaced; default all)."""
    video_frames: int = may_change(90)
    """Frames of the camera-path video (0: none)."""
    kill_at_step: Optional[int] = may_change(None)
    """Testing aid: SIGKILL this process when it reaches this step, as a crash would."""


@dataclass(kw_only=True)
class DatasetOptions:
    """Where reconstruction methods read their posed photos."""

    data: tyro.conf.Positional[Path]
    """Dataset: Blender, nerfstudio (e.g. a `lumen3d sfm` run), COLMAP or LLFF."""
    format: Literal["auto", "blender", "nerfstudio", "colmap", "llff"] = "auto"
    downscale: Optional[float] = None
    """Image downscale factor (LLFF: relative to the full-resolution photos)."""
