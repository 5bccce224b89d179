"""What a method supplies to the training loop."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, ClassVar

from torch import Tensor

from engine.cameras import Cameras
from engine.rendering import RenderOutput


class Method:
    """A trainable scene with its optimiser. The loop calls, in order: `prepare()` (work that is
    not training time), `load_state_dict` on resume, `train_step` until the budget is spent (with
    `state_dict` at checkpoints), then `test_views`/`render` for evaluation, `video_cameras` for
    the video, `export` and `summary`.

    Subclasses set `kind` (the registry's name, stored in checkpoints) and implement the hooks.
    Checkpoint consumers that have no dataset (`lumen3d export`, `lumen3d view`) use the class
    methods `export_checkpoint` and `view_content` on a checkpoint's `meta` and `state`.
    """

    kind: ClassVar[str]
    device: str = "cpu"

    def prepare(self) -> None:
        """Work before the training clock starts (a first kernel build takes a minute)."""

    def train_step(self, step: int, fraction: Callable[[int], float]) -> dict[str, Tensor | float]:
        """One optimiser step; `step` counts from 1. `fraction(s)` is the part of the budget (steps
        or minutes) used at step s, for schedules. Returns scalars for the curves and progress bar
        (0-d tensors are read only when logged)."""
        raise NotImplementedError

    def after_step(self, step: int, run, final: bool) -> None:
        """Called after every step, and once more at the end (final): what a method writes to its run
        as it trains (the guidance model's sample grids)."""

    def describe(self, scalars: dict[str, float]) -> str:
        """The progress bar's text for the latest scalars."""
        return "  ".join(f"{k} {v:.4g}" for k, v in scalars.items())

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict, source: Path) -> None:
        raise NotImplementedError

    def meta(self) -> dict:
        """What rebuilds the trained scene from a checkpoint without the dataset."""
        return {}

    def render(self, camera: Cameras) -> RenderOutput:
        """One camera's image (inference)."""
        raise NotImplementedError

    def test_views(self) -> list[tuple[Cameras, Callable[[], Tensor]]]:
        """(camera, target loader) of the evaluation split; none for generated scenes."""
        return []

    def video_cameras(self, frames: int) -> Cameras | None:
        return None

    def export(self, run) -> dict:
        """Write the run's exports; returns what was written."""
        return {}

    def summary(self, train_seconds: float) -> dict:
        """The method's own figures for metrics.json (`train_seconds`: the loop's training time)."""
        return {}

    def snapshot(self) -> dict | None:
        """What a live view can draw (Gaussian parameters), or None; the view copies the tensors
        only when it takes a frame, so offering them every step costs nothing."""
        return None

    @classmethod
    def export_checkpoint(cls, ckpt: dict, source: Path, fmt: str, out: Path | None, options) -> str:
        """`lumen3d export` of a run of this kind: writes `out` (or the default path); returns a line
        saying what was written."""
        raise NotImplementedError

    @classmethod
    def view_content(cls, ckpt: dict, source: Path) -> dict:
        """What `lumen3d view` shows of a checkpoint when the run has no exports: {'gaussians':
        params} or {} (the viewer then shows the run's exported files and cameras)."""
        return {}
