"""`lumen3d view`: any result in a window, or rendered offscreen to PNG / MP4."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import tyro


@dataclass
class ViewJob:
    """Show results (run directories, splat PLYs, meshes, point clouds, COLMAP models, datasets,
    body sequences) in an Open3D window, or render them offscreen with --png / --video."""

    paths: tyro.conf.Positional[list[Path]]
    """Files or folders; several are shown together (in one world frame, or --side-by-side)."""
    png: Optional[Path] = None
    """Render one image offscreen to this PNG (no display needed)."""
    video: Optional[Path] = None
    """Render an MP4 offscreen: a body sequence plays; anything else turns on a turntable."""
    width: int = 960
    height: int = 720
    view_from: Optional[int] = None
    """Look through camera N of the content's cameras (a dataset's frame N)."""
    eye: Optional[tuple[float, float, float]] = None
    """Camera position (with --target); default: framed on the content."""
    target: Optional[tuple[float, float, float]] = None
    up: Optional[tuple[float, float, float]] = None
    """World up (default: the cameras' mean up, else +z)."""
    fov: float = 50.0
    """Vertical field of view in degrees."""
    azimuth: float = 45.0
    """Orbit position of the default view, degrees round the up axis."""
    elevation: float = 25.0
    frame: int = 0
    """Body-sequence frame for --png."""
    turntable: bool = False
    """--video turns round the content even when it has a body sequence."""
    frames: int = 120
    """Turntable frames."""
    fps: Optional[float] = None
    """Video frame rate (default: the sequence's, or 30)."""
    splats: Literal["auto", "raster", "native", "points"] = "auto"
    """Gaussian splats: our rasterizer under Open3D's drawing (raster, offscreen), Open3D's splat
    renderer (native, Open3D ≥ 0.20), or their centres as points. auto: raster offscreen, native
    in a window."""
    cameras: bool = True
    """Show camera frustums."""
    thumbnails: bool = True
    """Show each camera's photo in its frustum."""
    points: bool = True
    """Show point clouds and SfM points."""
    side_by_side: bool = False
    """Place each path's content beside the previous one's instead of overlaying them."""
    overlay: bool = True
    """A body sequence seen through its camera is drawn over its photo with the 2D keypoints."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    debug: bool = False
    """Show full tracebacks."""

    def check(self) -> None:
        import math

        from engine.errors import check_option

        def finite(*v):
            return all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)

        for name in ("width", "height"):
            check_option(16 <= getattr(self, name) <= 8192, name, getattr(self, name), "must be 16 to 8192")
        check_option(finite(self.fov) and 1 <= self.fov <= 170, "fov", self.fov, "must be 1 to 170 degrees")
        check_option(finite(self.azimuth), "azimuth", self.azimuth, "must be a number of degrees")
        check_option(finite(self.elevation) and -89 <= self.elevation <= 89, "elevation", self.elevation,
                     "must be -89 to 89 degrees")
        check_option(1 <= self.frames <= 100_000, "frames", self.frames, "must be 1 to 100000")
        check_option(self.frame >= 0, "frame", self.frame, "must be 0 or more")
        check_option(self.fps is None or (finite(self.fps) and 0 < self.fps <= 1000), "fps", self.fps,
                     "must be above 0 and at most 1000")
        check_option(self.view_from is None or self.view_from >= 0, "view_from", self.view_from, "must be 0 or more")
        check_option(finite(*self.background) and all(0 <= c <= 1 for c in self.background), "background",
                     self.background, "must be three numbers between 0 and 1")
        for name in ("eye", "target", "up"):
            v = getattr(self, name)
            check_option(v is None or finite(*v), name, v, "must be three finite numbers")
        check_option(self.up is None or any(c != 0 for c in self.up), "up", self.up, "must not be zero")
        check_option(self.eye is None or self.target is None or tuple(self.eye) != tuple(self.target), "eye",
                     self.eye, "must differ from --target")

    def run(self) -> None:
        from engine.errors import InputError
        from engine.progress import console, track
        from viewer.show import framing_items, load_scene_for_view, render_frames

        for out, suffix in ((self.png, ".png"), (self.video, ".mp4")):
            if out is not None and out.suffix.lower() != suffix:
                raise InputError(out, f"output must end in {suffix}")
        if self.width < 16 or self.height < 16 or self.width > 8192 or self.height > 8192:
            raise InputError(None, f"--width/--height must be 16..8192, got {self.width}x{self.height}")
        if (self.eye is None) != (self.target is None):
            raise InputError(None, "--eye and --target go together")
        from engine.io import check_output

        for out in (self.png, self.video):
            if out is not None:
                check_output(out, self.paths)
        offscreen = self.png is not None or self.video is not None
        scene = load_scene_for_view(self.paths, self.splats, self.cameras, self.points, self.thumbnails,
                                    self.side_by_side, self.up, offscreen)
        for note in scene.notes:
            console.print(note)
        if self.png is None and self.video is None:
            from viewer.window import show_window

            return show_window(scene, self._view(scene, framing_items(scene)))
        items = framing_items(scene)
        if self.png is not None:
            if not 0 <= self.frame < scene.num_frames:
                raise InputError(None, f"--frame {self.frame} is outside 0..{scene.num_frames - 1}")
            from viewer.offscreen import save_png

            img = next(render_frames(scene, [self._view(scene, items)], [self.frame], self.background, self.overlay))
            save_png(img, self.png)
            console.print(f"wrote {self.png} ({self.width}x{self.height})")
        if self.video is not None:
            from engine.io import write_mp4
            from viewer.framing import turntable

            seq = scene.sequence
            if seq is not None and not self.turntable:
                frames = list(range(seq.seq.num_frames))
                views = [self._view(scene, items)] * len(frames)
                fps = self.fps or seq.seq.fps
            else:
                views = turntable(items, scene.up, self.width, self.height, self.frames, self.fov, self.elevation)
                frames, fps = [self.frame] * len(views), self.fps or 30.0
            images = render_frames(scene, views, frames, self.background, self.overlay)
            if seq is not None and not self.turntable and self._fast_overlay(scene, views[0]):
                from viewer.overlay import overlay_frames

                # Open3D takes seconds per frame for a photo and a body on a CPU; this takes ≈ 0.15 s
                images = overlay_frames(seq.seq, (self.width, self.height))
            n = write_mp4(self.video, track(images, "rendering video", total=len(views)), fps)
            console.print(f"wrote {self.video} ({n} frames, {self.width}x{self.height})")

    def _fast_overlay(self, scene, view) -> bool:
        """A body sequence alone, seen through its own camera over its frames at the frames' aspect."""
        from viewer.show import _through_sequence_camera

        seq = scene.sequence
        return bool(self.overlay and len(scene.items) == 1 and seq.seq.frames and seq.seq.K is not None
                    and _through_sequence_camera(seq, view)
                    and abs(self.width * seq.seq.height - self.height * seq.seq.width) < max(seq.seq.width, 1))

    def _view(self, scene, items):
        import numpy as np

        from engine.data.cameras import look_at
        from engine.errors import InputError
        from viewer.framing import View, camera_view, default_view, orbit_view, content_bounds, pinhole

        if self.view_from is not None:
            cams = [c for it in scene.cameras for c in zip(it.c2w, it.intrinsics)]
            if not 0 <= self.view_from < len(cams):
                raise InputError(None, f"--view-from {self.view_from}: the content has {len(cams)} cameras")
            return camera_view(*cams[self.view_from], self.width, self.height)
        if self.eye is not None:
            try:
                c2w = look_at(np.array(self.eye), np.array(self.target), scene.up)
            except ValueError as e:
                raise InputError(None, f"--eye/--target: {e}") from None
            return View(pinhole(self.width, self.height, self.fov), c2w, self.width, self.height)
        if (self.azimuth, self.elevation) != (45.0, 25.0):
            lo, hi = content_bounds(items)
            return orbit_view((lo + hi) / 2, float(np.linalg.norm(hi - lo) / 2), scene.up, self.width, self.height,
                              self.fov, self.azimuth, self.elevation)
        return default_view(items, scene.up, self.width, self.height, self.fov)
