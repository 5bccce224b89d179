"""Options of the training loop, shared by every method. Light: no torch, so `--help` is fast."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import math

import tyro

from engine.errors import check_option
from engine.runs import RunOptions, may_change


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


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

    def check(self) -> None:
        """Refuse options outside their ranges, before a run directory is made."""
        check_option(self.max_steps >= 0, "max_steps", self.max_steps, "must be 0 or more")
        check_option(self.max_minutes is None or (finite(self.max_minutes) and self.max_minutes > 0), "max_minutes",
                     self.max_minutes, "must be a positive number of minutes")
        check_option(self.checkpoint_every >= 1, "checkpoint_every", self.checkpoint_every, "must be 1 or more")
        check_option(self.eval_views is None or self.eval_views >= 1, "eval_views", self.eval_views,
                     "must be 1 or more (leave it out for all)")
        check_option(0 <= self.video_frames <= 100_000, "video_frames", self.video_frames, "must be 0 to 100000")
        check_option(self.kill_at_step is None or self.kill_at_step >= 1, "kill_at_step", self.kill_at_step,
                     "must be 1 or more")
        RunOptions.check(self)


@dataclass(kw_only=True)
class ProcessOptions:
    """Training one scene on several processes and machines (data parallel over torch.distributed)."""

    nproc: int = may_change(1)
    """Processes on this machine: each takes its share of every step's views (or rays), and their
    gradients are summed before one optimiser step. For several machines, start `lumen3d train`
    under torchrun instead (README); each process then counts as one."""
    threads: Optional[int] = may_change(None)
    """Threads per process (default: this machine's cores shared among its processes)."""
    dist_timeout: float = may_change(300.0)
    """Seconds a process waits for the others at an exchange before the run stops with an error."""
    kill_rank: Optional[int] = may_change(None)
    """Testing aid: with --kill-at-step, only this rank is killed."""

    def check(self) -> None:
        check_option(1 <= self.nproc <= 1024, "nproc", self.nproc, "must be 1 to 1024")
        check_option(self.threads is None or 1 <= self.threads <= 1024, "threads", self.threads, "must be 1 to 1024")
        check_option(finite(self.dist_timeout) and self.dist_timeout > 0, "dist_timeout", self.dist_timeout,
                     "must be a positive number of seconds")
        check_option(self.kill_rank is None or self.kill_rank >= 0, "kill_rank", self.kill_rank, "must be 0 or more")


@dataclass(kw_only=True)
class DatasetOptions:
    """Where reconstruction methods read their posed photos."""

    data: tyro.conf.Positional[Path]
    """Dataset: Blender, nerfstudio (e.g. a `lumen3d sfm` run), COLMAP or LLFF."""
    format: Literal["auto", "blender", "nerfstudio", "colmap", "llff"] = "auto"
    downscale: Optional[float] = None
    """Image downscale factor (LLFF: relative to the full-resolution photos)."""
    strict: bool = False
    """Refuse a transforms.json that lists frames whose image is missing (by default they are
    skipped with a warning, as instant-ngp does)."""

    def check(self) -> None:
        check_option(self.downscale is None or (finite(self.downscale) and 0 < self.downscale <= 256), "downscale",
                     self.downscale, "must be a number above 0 and at most 256")
