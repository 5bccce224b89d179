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
