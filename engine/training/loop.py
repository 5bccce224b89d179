"""The training loop every method runs on."""
from __future__ import annotations

import logging
import os
import resource
import signal
import time
from pathlib import Path
from typing import Callable

from engine.errors import InputError
from engine.runs import resume_fingerprint
from engine.training.curves import Curves

log = logging.getLogger("lumen3d")

CHECKPOINT = ("checkpoints", "last.pt")
LOG_EVERY = 10  # steps between curve points and progress-bar updates


class TrainingLoop:
    """Runs `method` under `cfg`'s budget (`engine.training.options.TrainOptions`) in `run`.

    Checkpoints are `{kind, meta, config, state}`: the registry's kind, what rebuilds the scene
    (`Method.meta` plus the resume fingerprint), the resolved options, and the loop's and the
    method's state. `hooks` are called after every step as hook(step, method, final) — the live
    view is one.
    """

    def __init__(self, method, cfg, run):
        self.method, self.cfg, self.run = method, cfg, run
        self.step = 0
        self.train_seconds = 0.0
        self.curves = Curves(run.path("tensorboard"))
        self.hooks: list[Callable] = []

    # ------------------------------------------------------------------ budget
    def fraction(self, step: int) -> float:
        """Part of the budget used at `step`: steps, or wall time with --max-minutes, whichever is
        further along. Schedules follow it, so a time-limited run still anneals."""
        t = step / max(self.cfg.max_steps, 1)
        if self.cfg.max_minutes:
            t = max(t, self.train_seconds / (60 * self.cfg.max_minutes))
        return min(t, 1.0)

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.run.path(*CHECKPOINT)

    def save(self) -> None:
        import torch

        from engine.io import atomic_path
        from engine.runs import config_dict

        ckpt = {"kind": self.method.kind,
                "meta": {**self.method.meta(), "resume_fingerprint": resume_fingerprint(self.cfg)},
                "config": config_dict(self.cfg),
                "state": {"loop": {"step": self.step, "train_seconds": self.train_seconds,
                                   "curves": self.curves.state_dict()},
                          "method": self.method.state_dict()}}
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(ckpt, tmp)
        self.curves.flush()

    def resume(self) -> None:
        """Continue from the run's checkpoint when --resume asks for it (and one exists)."""
        from engine.io import load_checkpoint

        path = self.checkpoint_path
        if not self.cfg.resume:
            return
        if not path.is_file():
            log.info("no checkpoint in %s: starting from scratch", self.run.root)
            return
        ckpt = load_checkpoint(path)
        if ckpt.get("kind") != self.method.kind:
            raise InputError(path, f"not a checkpoint of {self.method.kind} training by this version of lumen3d "
                                   f"(kind {ckpt.get('kind')!r}); start a new run")
        meta = ckpt.get("meta")
        if not isinstance(meta, dict) or meta.get("resume_fingerprint") != resume_fingerprint(self.cfg):
            raise InputError(path, "checkpoint was made with different training options; resume with the same ones")
        try:
            loop = ckpt["state"]["loop"]
            self.step, self.train_seconds = int(loop["step"]), float(loop["train_seconds"])
            self.method.load_state_dict(ckpt["state"]["method"], path)
            self.curves.resume(loop.get("curves", {}), self.step)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise InputError(path, f"checkpoint state is incomplete or does not fit this run ({e!r:.120})") from None
        log.info("resumed from %s at step %d", path, self.step)

    # ------------------------------------------------------------------ training
    def train(self) -> None:
        from engine.progress import progress
        from engine.threads import tick

        cfg, method = self.cfg, self.method
        method.prepare()
        deadline = None if cfg.max_minutes is None else cfg.max_minutes * 60
        last = (self.step, self.train_seconds)
        with progress() as bar:
            task = bar.add_task("training", total=cfg.max_steps, completed=self.step)
            while self.step < cfg.max_steps:
                if deadline is not None and self.train_seconds >= deadline:
                    log.info("stopping at step %d: --max-minutes reached", self.step)
                    break
                step = self.step + 1
                if cfg.kill_at_step is not None and step == cfg.kill_at_step:
                    os.kill(os.getpid(), signal.SIGKILL)
                threads = tick()
                t0 = time.perf_counter()
                scalars = method.train_step(step, self.fraction)
                self.step = step
                self.train_seconds += time.perf_counter() - t0
                if step % LOG_EVERY == 0 or step == cfg.max_steps:
                    values = {k: float(v) for k, v in scalars.items()}
                    values["step_seconds"] = (self.train_seconds - last[1]) / max(step - last[0], 1)
                    values["threads"] = threads
                    last = (step, self.train_seconds)
                    self.curves.add(step, values)
                    bar.update(task, completed=step, description=f"training  {method.describe(values)}")
                if step % cfg.checkpoint_every == 0:
                    self.save()
                method.after_step(step, self.run, False)
                for hook in self.hooks:
                    hook(step, method, False)
        self.save()
        method.after_step(self.step, self.run, True)
        for hook in self.hooks:
            hook(self.step, method, True)

    # ------------------------------------------------------------------ results
    def finish(self, extra: dict | None = None) -> dict:
        """Evaluation, video, exports, curves and metrics.json; returns the metrics."""
        from engine.training.evaluation import evaluate, render_video

        cfg, method, run = self.cfg, self.method, self.run
        self.curves.close()
        test = evaluate(method, run, cfg.eval_views)
        video = render_video(method, run.path("renders", "video.mp4"), cfg.video_frames,
                             (test or {}).get("render_rays_per_second"), self.train_seconds)
        exports = method.export(run)
        curves = self.curves.plot(run.path("renders", "curves.png"))
        metrics = {"test": test, "steps": self.step, "train_seconds": self.train_seconds,
                   "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "exports": exports, "video": str(video) if video else None,
                   "curves": str(curves) if curves else None, **method.summary(self.train_seconds), **(extra or {})}
        run.write_metrics(**metrics)
        if test:
            log.info("test PSNR %.2f dB, SSIM %.4f over %d views; %d steps in %.0f s", test["psnr"], test["ssim"],
                     test["views"], self.step, self.train_seconds)
        return metrics
