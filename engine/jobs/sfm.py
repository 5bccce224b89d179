"""`lumen3d sfm`: photos or a video → COLMAP model, undistorted images, transforms.json."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import tyro

from engine.errors import InputError
from engine.runs import RunOptions, start_run
from engine.sfm import SfmOptions

log = logging.getLogger("lumen3d")


@dataclass
class SfmJob(SfmOptions, RunOptions):
    """Structure from motion on a folder of photos or a video (pycolmap, CPU)."""

    images: tyro.conf.Positional[Optional[Path]] = None
    """Folder of photos."""
    video: Optional[Path] = None
    """A video file instead of photos; frames are taken at --fps."""
    fps: float = 2.0
    """Frames per second taken from --video."""

    def check(self) -> None:
        import math

        from engine.errors import check_option

        RunOptions.check(self)
        check_option(math.isfinite(self.fps) and 0 < self.fps <= 1000, "fps", self.fps,
                     "must be above 0 and at most 1000")
        check_option(64 <= self.max_image_size <= 32768, "max_image_size", self.max_image_size, "must be 64 to 32768")
        check_option(16 <= self.max_features <= 1_000_000, "max_features", self.max_features,
                     "must be 16 to 1000000")
        check_option(self.sequential_overlap >= 1, "sequential_overlap", self.sequential_overlap, "must be 1 or more")
        check_option(self.threads == -1 or self.threads >= 1, "threads", self.threads, "must be -1 (all) or 1 or more")

    def run(self) -> None:
        from engine.sfm import extract_video_frames, run_sfm

        if (self.images is None) == (self.video is None):
            raise InputError(None, "give a folder of photos or --video FILE (exactly one)")
        source = self.images or self.video
        if not Path(source).exists():
            raise InputError(source, "not found")
        run = start_run("sfm", self, inputs=[source])
        images = self.images
        if self.video is not None:
            images = run.path("frames")
            extract_video_frames(self.video, self.fps, images)
        result = run_sfm(Path(images), run.root, self, seed=self.seed, video=self.video is not None)
        report_sfm(run, result)


def report_sfm(run, result) -> None:
    log.info("registered %d/%d images, mean reprojection error %.3f px, %d points (%.1f s)",
             result.registered, result.total, result.mean_reprojection_error_px, result.num_points,
             sum(result.seconds.values()))
    run.write_metrics(sfm={"registered": result.registered, "total": result.total,
                           "mean_reprojection_error_px": result.mean_reprojection_error_px,
                           "num_points": result.num_points, "seconds": result.seconds, "camera": result.camera})
