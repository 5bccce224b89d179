"""The interactive window: Open3D's O3DVisualizer with the same drawables as the offscreen
renderer. A body sequence becomes an animation (time slider, play/pause); its photo with the
2D keypoints opens beside it from the Actions panel."""
from __future__ import annotations

import os
import sys
import threading

import numpy as np

from engine.errors import InputError
from viewer.framing import View
from viewer.offscreen import Colours

KEYS_HELP = ("Mouse: left-drag rotates, Ctrl+left-drag pans, Shift+left-drag moves forward and back, the "
             "wheel zooms. The panel on the right lists every result (tick to show or hide it), sets point "
             "size, lighting and background, switches the mouse mode (Fly, Model), and holds the Actions; "
             "a body sequence adds a time slider and a play button.")


def has_display() -> bool:
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def show_window(scene, view: View, title: str = "lumen3d", on_ready=None) -> None:
    """Open the window and run until it is closed. `on_ready(vis)`, if given, runs on the UI
    thread once the first frames are drawn (scripts and tests use it to save and close)."""
    if not has_display():
        raise InputError(None, "no display to open a window on (DISPLAY/WAYLAND_DISPLAY unset); "
                               "render offscreen with --png FILE or --video FILE")
    import open3d as o3d
    from open3d.visualization import gui

    from engine.progress import console
    from viewer.geometry import resolve_splat_mode

    if scene.splat_mode == "raster":  # our rasterizer draws offscreen images only
        scene.splat_mode = resolve_splat_mode("auto", offscreen=False)

    app = gui.Application.instance
    app.initialize()
    vis = o3d.visualization.O3DVisualizer(title, view.width, view.height)
    vis.show_settings = True
    vis.show_skybox(False)
    vis.set_background(np.array([1.0, 1.0, 1.0, 1.0], np.float32), None)
    # the window encodes its output to sRGB itself (post-processing on)
    for d in scene.drawables(frame=None, colours=Colours(linear=True)):
        if d.time is not None:
            vis.add_geometry({"name": d.name, "geometry": d.geometry, "material": d.material, "time": d.time})
        elif d.is_model:
            vis.add_geometry(d.name, d.geometry)
        else:
            vis.add_geometry(d.name, d.geometry, d.material)
    seq = scene.sequence
    if seq is not None:
        vis.animation_time_step = 1.0 / seq.seq.fps
        vis.animation_duration = seq.seq.num_frames / seq.seq.fps
        if seq.seq.frames:
            vis.add_action("Photo + keypoints", lambda v: _show_photo(app, seq, v.current_time))
    vis.add_action("Help", lambda v: v.show_message_box("lumen3d viewer", KEYS_HELP))
    vis.setup_camera(view.K, view.w2c, view.width, view.height)
    console.print(KEYS_HELP)
    app.add_window(vis)
    if on_ready is not None:
        threading.Timer(2.0, lambda: app.post_to_main_thread(vis, lambda: on_ready(vis))).start()
    app.run()


def _show_photo(app, seq, time_s: float) -> None:
    """The sequence frame at `time_s` with its detected keypoints, in a window of its own."""
    import open3d as o3d
    from open3d.visualization import gui

    from viewer.offscreen import draw_keypoints
    from viewer.show import _photo

    s = seq.seq
    t = int(np.clip(round(time_s * s.fps), 0, s.num_frames - 1))
    w, h = s.width or 640, s.height or 480
    img = _photo(s.frames[t], w, h)
    if s.keypoints2d is not None:
        img = draw_keypoints(img, s.keypoints2d[t], s.skeleton)
    win = app.create_window(f"frame {t}", w, h)
    win.add_child(gui.ImageWidget(o3d.geometry.Image(np.ascontiguousarray(img))))
