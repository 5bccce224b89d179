"""The training loop every method runs on."""
from __future__ import annotations

import logging
import os
import resource
import signal
import time
from pathlib import Path
from typing import Callable

from engine.errors import InputError, Silent
from engine.runs import resume_fingerprint
from engine.training.curves import Curves

log = logging.getLogger("lumen3d")

CHECKPOINT = ("checkpoints", "last.pt")
LOG_EVERY = 10  # steps between curve points and progress-bar updates


def _checksum(state) -> float:
    """A sum over every tensor in a nested state (a fingerprint, not a hash)."""
    import torch

    if isinstance(state, torch.Tensor):
        return float(torch.nan_to_num(state.double(), 0.0, 1e300, -1e300).sum())
    if isinstance(state, dict):
        return sum(_checksum(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_checksum(v) for v in state)
    return 0.0


class TrainingLoop:
    """Runs `method` under `cfg`'s budget (`engine.training.options.TrainOptions`) in `run`.

    Checkpoints are `{kind, meta, config, state}`: the registry's kind, what rebuilds the scene
    (`Method.meta` plus the resume fingerprint), the resolved options, and the loop's and the
    method's state. `hooks` are called after every step as hook(step, method, final) — the live
    view is one.

    On several processes (`group`, see `engine.training.distributed`) every process runs the loop
    and the method's steps exchange what they must; rank 0 alone has a `run` and writes it, reads
    the checkpoint on resume and sends it to the others.
    """

    def __init__(self, method, cfg, run, group=None):
        from engine.training.distributed import Processes

        self.method, self.cfg, self.run = method, cfg, run
        self.group = group or Processes()
        self.step = self.saved_step = 0
        self.train_seconds = 0.0
        self.curves = Curves(run.path("tensorboard")) if self.group.main else None
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

        if not self.group.main:  # the processes hold the same state: one copy is the checkpoint
            return
        ckpt = {"kind": self.method.kind,
                "meta": {**self.method.meta(), "resume_fingerprint": resume_fingerprint(self.cfg)},
                "config": config_dict(self.cfg),
                "state": {"loop": {"step": self.step, "train_seconds": self.train_seconds,
                                   "curves": self.curves.state_dict()},
                          "method": self.method.state_dict(), "processes": self.group.world}}
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(ckpt, tmp)
        self.curves.flush()

    def resume(self) -> None:
        """Continue from the run's checkpoint when --resume asks for it (and one exists)."""
        if not self.cfg.resume:
            return
        try:
            self._resume()
        except InputError as e:
            if not self.group.main:  # it read the same bytes as rank 0, which says what is wrong
                raise Silent(str(e)) from None
            raise
        self.saved_step = self.step

    def _resume(self) -> None:
        from engine.io import load_checkpoint

        group = self.group
        path = self.checkpoint_path if group.main else Path(CHECKPOINT[1])
        data = None
        if group.world > 1:  # rank 0 sends the file: the other machines need not see the run directory
            data = group.broadcast_bytes(path.read_bytes() if group.main and path.is_file() else None)
        if not (data if group.world > 1 else path.is_file()):
            if group.main:
                log.info("no checkpoint in %s: starting from scratch", self.run.root)
            return
        ckpt = load_checkpoint(path, data)
        if ckpt.get("kind") != self.method.kind:
            raise InputError(path, f"not a checkpoint of {self.method.kind} training by this version of lumen3d "
                                   f"(kind {ckpt.get('kind')!r}); start a new run")
        meta = ckpt.get("meta")
        if not isinstance(meta, dict) or meta.get("resume_fingerprint") != resume_fingerprint(self.cfg):
            raise InputError(path, "checkpoint was made with different training options; resume with the same ones")
        try:
            loop = ckpt["state"]["loop"]
            processes = int(ckpt["state"].get("processes", 1))
            if processes != group.world:
                raise InputError(path, f"checkpoint of a run on {processes} process(es); resume it on as many "
                                       f"(--nproc {processes}), since each takes its own share of every step")
            self.step, self.train_seconds = int(loop["step"]), float(loop["train_seconds"])
            self.method.load_state_dict(ckpt["state"]["method"], path)
            if self.curves is not None:
                self.curves.resume(loop.get("curves", {}), self.step)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise InputError(path, f"checkpoint state is incomplete or does not fit this run ({e!r:.120})") from None
        if group.main:
            log.info("resumed from %s at step %d", path, self.step)

    def check_processes_agree(self) -> None:
        """Refuse to train when the processes do not hold the same scene (another copy of the data on
        another machine, another version of lumen3d): their steps would silently disagree."""
        import torch

        group = self.group
        if group.world == 1:
            return
        own = torch.tensor([_checksum(self.method.state_dict())], dtype=torch.float64)
        high, low = own.clone(), -own
        group.all_reduce([high], "max")
        group.all_reduce([low], "max")
        if float(high) != float(own) or -float(low) != float(own):  # then so it is for every process
            problem = ("the processes built different scenes from their data (are the datasets, options and "
                       "lumen3d versions the same on every machine?)")
            raise InputError(None, problem) if group.main else Silent(problem)

    # ------------------------------------------------------------------ training
    def train(self) -> None:
        from engine.training.distributed import PeerLost

        try:
            self._train()
        except PeerLost as e:
            saved = f"its checkpoint of step {self.saved_step} continues it with --resume" if self.saved_step \
                else "it had no checkpoint yet"
            raise PeerLost(f"training stopped at step {self.step + 1}: {e.problem}; {saved}") from None

    def _train(self) -> None:
        from engine.progress import progress
        from engine.threads import tick

        cfg, method, group = self.cfg, self.method, self.group
        method.prepare()
        self.check_processes_agree()
        deadline = None if cfg.max_minutes is None else cfg.max_minutes * 60
        last = (self.step, self.train_seconds)
        kill_rank = getattr(cfg, "kill_rank", None)
        with progress(disable=not group.main) as bar:
            task = bar.add_task("training", total=cfg.max_steps, completed=self.step)
            while self.step < cfg.max_steps:
                if deadline is not None and group.world > 1:
                    self.train_seconds = self._seconds()  # the schedules' fraction must agree too
                if deadline is not None and self.train_seconds >= deadline:
                    if group.main:
                        log.info("stopping at step %d: --max-minutes reached", self.step)
                    break
                step = self.step + 1
                if cfg.kill_at_step is not None and step == cfg.kill_at_step and kill_rank in (None, group.rank):
                    os.kill(os.getpid(), signal.SIGKILL)
                threads = tick()
                t0 = time.perf_counter()
                scalars = method.train_step(step, self.fraction)
                self.step = step
                self.train_seconds += time.perf_counter() - t0
                if self.curves is not None and (step % LOG_EVERY == 0 or step == cfg.max_steps):
                    values = {k: float(v) for k, v in scalars.items()}
                    values["step_seconds"] = (self.train_seconds - last[1]) / max(step - last[0], 1)
                    values["threads"] = threads
                    last = (step, self.train_seconds)
                    self.curves.add(step, values)
                    bar.update(task, completed=step, description=f"training  {method.describe(values)}")
                if step % cfg.checkpoint_every == 0:
                    self.save()
                    self.saved_step = step
                method.after_step(step, self.run, False)
                for hook in self.hooks:
                    hook(step, method, False)
        self.save()
        self.saved_step = self.step
        method.after_step(self.step, self.run, True)
        for hook in self.hooks:
            hook(self.step, method, True)

    def _seconds(self) -> float:
        """Rank 0's training time, on every process: a --max-minutes budget must end every process at
        the same step."""
        import torch

        t = torch.tensor([self.train_seconds if self.group.main else 0.0], dtype=torch.float64)
        self.group.all_reduce([t])
        return float(t)

    # ------------------------------------------------------------------ results
    def finish(self, extra: dict | None = None) -> dict:
        """Evaluation, video, exports, curves and metrics.json; returns the metrics (rank 0; the other
        processes share the evaluation and the video, then return {})."""
        from engine.training.evaluation import evaluate, render_video

        cfg, method, run, group = self.cfg, self.method, self.run, self.group
        train_seconds = self.train_seconds if group.world == 1 else self._seconds()
        if self.curves is not None:
            self.curves.close()
        test = evaluate(method, run, cfg.eval_views, group=group)
        video = render_video(method, run.path("renders", "video.mp4") if group.main else None, cfg.video_frames,
                             (test or {}).get("render_rays_per_second"), train_seconds, group=group)
        exchanged = (group.seconds, group.bytes)
        group.leave()  # rank 0's exports need no one else
        if not group.main:
            return {}
        exports = method.export(run)
        curves = self.curves.plot(run.path("renders", "curves.png"))
        metrics = {"test": test, "steps": self.step, "train_seconds": train_seconds,
                   "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "exports": exports, "video": str(video) if video else None,
                   "curves": str(curves) if curves else None, **method.summary(train_seconds), **(extra or {})}
        if group.world > 1:
            metrics["processes"] = {"count": group.world, "exchange_seconds": exchanged[0],
                                    "exchange_bytes": exchanged[1]}
        run.write_metrics(**metrics)
        if test:
            log.info("test PSNR %.2f dB, SSIM %.4f over %d views; %d steps in %.0f s", test["psnr"], test["ssim"],
                     test["views"], self.step, train_seconds)
        return metrics
