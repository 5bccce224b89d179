"""`lumen3d demo`, the main job on built-in data: photograph a procedural scene, then
reconstruct it from the photos alone and measure the result against the true cameras."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from engine.runs import RunOptions, start_run
from engine.sfm import SfmOptions

log = logging.getLogger("lumen3d")


@dataclass
class DemoJob(RunOptions):
    """Main job: built-in photos → structure from motion → Gaussian splatting → test metrics,
    video and PLY; the cameras are checked against the true ones."""

    views: int = 32
    """Number of photos, on a ring around the scene."""
    width: int = 400
    height: int = 300
    photos_only: bool = False
    """Only render the built-in scene's photos (and its true cameras as transforms.json) to <out>/scene."""
    train_steps: int = 1500
    """Gaussian-splatting training steps on the reconstructed scene (0: stop after SfM)."""

    def check(self) -> None:
        from engine.errors import check_option

        RunOptions.check(self)
        check_option(3 <= self.views <= 2000, "views", self.views, "must be 3 to 2000")
        for name in ("width", "height"):
            check_option(16 <= getattr(self, name) <= 8192, name, getattr(self, name), "must be 16 to 8192")
        check_option(self.train_steps >= 0, "train_steps", self.train_steps, "must be 0 or more")

    def run(self) -> None:
        from engine.data.align import pose_errors
        from engine.data.nerfstudio import load_nerfstudio
        from engine.jobs.sfm import report_sfm
        from engine.sfm import run_sfm
        from viewer.builtin_scene import generate_scene

        if self.photos_only:
            run = start_run("demo-photos", self)
            frames = generate_scene(run.path("scene"), self.views, self.width, self.height, self.seed)
            run.write_metrics(views=len(frames), width=self.width, height=self.height)
            return
        run = start_run("demo", self)
        t = time.perf_counter()
        truth = generate_scene(run.path("scene"), self.views, self.width, self.height, self.seed)
        gen_s = time.perf_counter() - t
        result = run_sfm(run.path("scene", "images"), run.root, SfmOptions(), seed=self.seed)
        result.seconds["generate"] = gen_s
        report_sfm(run, result)

        est = load_nerfstudio(run.root)
        by_name = {f.image_path.name: f for f in truth}
        pairs = [(f, by_name[f.image_path.name]) for f in est.frames]
        err = pose_errors(np.array([e.c2w for e, _ in pairs]), np.array([g.c2w for _, g in pairs]))
        cam = result.camera
        focal_err = abs(cam["params"][0] - truth[0].intrinsics.fx) / truth[0].intrinsics.fx
        summary = {"rotation_error_deg_median": float(np.median(err["rotation_deg"])),
                   "rotation_error_deg_max": float(err["rotation_deg"].max()),
                   "center_error_rel_median": float(np.median(err["center_error_rel"])),
                   "focal_error_rel": float(focal_err)}
        run.write_metrics(sfm_vs_truth=summary)
        log.info("against the true cameras: rotation error median %.3f° (max %.3f°), centre error %.2f%% "
                 "of the ring, focal error %.2f%%", summary["rotation_error_deg_median"],
                 summary["rotation_error_deg_max"], 100 * summary["center_error_rel_median"], 100 * focal_err)
        if self.train_steps > 0:
            from engine.jobs.train import run_training
            from engine.methods.configs import GaussiansConfig
            from viewer.builtin_scene import SKY

            cfg = GaussiansConfig(data=run.root, out=run.root, seed=self.seed, max_steps=self.train_steps,
                                  background=SKY, video_frames=60, checkpoint_every=max(self.train_steps // 3, 1))
            run_training(cfg, run)
            from viewer.framing import default_view
            from viewer.offscreen import save_png
            from viewer.show import framing_items, load_scene_for_view, render_frames

            scene = load_scene_for_view([run.root])
            view = default_view(framing_items(scene), scene.up, 960, 720)
            save_png(next(render_frames(scene, [view])), run.path("renders", "view.png"))
        log.info("results in %s: metrics.json, renders/ (test views, video.mp4, view.png), exports/ "
                 "(point_cloud.ply, scene.splat), transforms.json, sparse/0; `lumen3d view %s` shows them",
                 run.root, run.root)
