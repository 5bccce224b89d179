"""The scene while it trains: every few seconds the training loop hands over a copy of the
Gaussians (the only cost it pays) and a background thread shows it — rendered offscreen to a
PNG, or in a window that follows training and closes when training ends."""
from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

from viewer.framing import View

log = logging.getLogger("lumen3d")


class LivePreview:
    def __init__(self, view: View, every_s: float = 10.0, png: Path | None = None, background=(1.0, 1.0, 1.0)):
        self.view, self.every_s, self.png = view, float(every_s), png
        self.background = tuple(float(c) for c in background)
        self.last = -float("inf")
        self.renders, self.render_seconds, self.handoff_seconds = 0, 0.0, 0.0
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._window = None  # (app, vis) when a window shows the scene

    # ---------------------------------------------------------------- training side
    def offer(self, params: dict, step: int, final: bool = False) -> None:
        """Hand over a snapshot when one is due and the previous one has been shown."""
        now = time.perf_counter()
        if not final and (now - self.last < self.every_s or self._queue.full()):
            return
        t0 = time.perf_counter()
        snapshot = {k: v.detach().clone() for k, v in params.items()}
        self.handoff_seconds += time.perf_counter() - t0
        self.last = now
        if final:
            self._queue.put((snapshot, step))
        else:
            try:
                self._queue.put_nowait((snapshot, step))
            except queue.Full:
                pass

    # ---------------------------------------------------------------- offscreen
    def start_offscreen(self) -> None:
        self._thread = threading.Thread(target=self._offscreen_loop, name="live-preview", daemon=True)
        self._thread.start()

    def _offscreen_loop(self) -> None:
        """PNG mode renders with our own rasterizer (forward only): on a CPU it costs tens of
        milliseconds where Open3D's software Vulkan path costs about a second per frame, time
        taken from training on a small machine."""
        import numpy as np

        from viewer.offscreen import save_png
        from viewer.show import render_splats

        try:
            while (item := self._queue.get()) is not None:
                p, step = item
                t0 = time.perf_counter()
                rgb = render_splats(p, self.view, self.background).rgb
                save_png((rgb.clamp(0, 1).numpy() * 255).round().astype(np.uint8), self.png)
                self.renders += 1
                self.render_seconds += time.perf_counter() - t0
        except BaseException as e:  # reported by close(); training goes on without a preview
            self._error = e

    # ---------------------------------------------------------------- window
    def run_window(self, work) -> object:
        """Run `work()` (the training) in a thread while this thread shows the window; the
        window closes when the work ends. Returns work()'s result, or raises its error."""
        import open3d as o3d
        from open3d.visualization import gui

        from viewer.window import has_display

        if not has_display():
            from engine.errors import InputError

            raise InputError(None, "--live-view window needs a display; use --live-view png")
        app = gui.Application.instance
        app.initialize()
        vis = o3d.visualization.O3DVisualizer("lumen3d — training", self.view.width, self.view.height)
        vis.show_skybox(False)
        vis.setup_camera(self.view.K, self.view.w2c, self.view.width, self.view.height)
        app.add_window(vis)
        result: dict = {}

        def worker():
            try:
                result["value"] = work()
            except BaseException as e:
                result["error"] = e
            finally:
                self._queue.put(None)

        def shower():
            while (item := self._queue.get()) is not None:
                app.post_to_main_thread(vis, lambda item=item: self._show(vis, *item))
            app.post_to_main_thread(vis, vis.close)

        threading.Thread(target=worker, name="training", daemon=True).start()
        threading.Thread(target=shower, name="live-window", daemon=True).start()
        app.run()
        if "error" in result:
            raise result["error"]
        return result.get("value")

    def _show(self, vis, params: dict, step: int) -> None:
        from viewer.content import Gaussians
        from viewer.geometry import gaussians_drawable
        from viewer.offscreen import Colours

        t0 = time.perf_counter()
        d = gaussians_drawable(Gaussians("scene", params, None), "native", Colours(False))
        vis.remove_geometry("scene")
        vis.add_geometry("scene", d.geometry, d.material)
        vis.title = f"lumen3d — training, step {step}"
        self.renders += 1
        self.render_seconds += time.perf_counter() - t0

    # ---------------------------------------------------------------- both
    def close(self) -> dict:
        """Stop the thread (after it has shown what it was given) and report what the preview cost."""
        if hasattr(self, "_thread"):
            self._queue.put(None)
            self._thread.join(timeout=120)
        if self._error is not None:
            log.warning("live preview failed: %s", self._error)
        return {"renders": self.renders, "render_seconds": round(self.render_seconds, 3),
                "handoff_seconds": round(self.handoff_seconds, 4), "every_s": self.every_s,
                "error": None if self._error is None else str(self._error)}
