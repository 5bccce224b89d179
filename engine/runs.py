"""Run directories: resolved config, metrics.json, a log, checkpoints/, renders/, exports/."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import platform
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from engine._version import __version__
from engine.errors import InputError
from engine.io import atomic_write_json

log = logging.getLogger("lumen3d")

SUBDIRS = ("checkpoints", "renders", "exports")


def may_change(default: Any) -> Any:
    """A config field that a resumed run may change (budget, outputs, testing aids): every other
    field must match the checkpoint's, so `--resume` continues the same training."""
    return dataclasses.field(default=default, metadata={"resume": "may change"})


def resume_fingerprint(cfg) -> str:
    """The fields a resumed run must keep, as one comparable string."""
    keep = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.metadata.get("resume") != "may change"}
    return repr(sorted((k, str(v)) for k, v in keep.items()))


@dataclass
class RunOptions:
    """Options every job that writes a run directory takes."""

    out: Path | None = may_change(None)
    """Run directory (default: runs/<job>-<date>-<time>)."""
    device: Literal["auto", "cpu", "cuda"] = may_change("auto")
    """Where to compute: auto picks cuda when a GPU is visible."""
    seed: int = 0
    """Random seed for everything the job draws."""
    overwrite: bool = may_change(False)
    """Allow writing into a run directory that already holds results."""
    debug: bool = may_change(False)
    """Show full tracebacks."""

    def check(self) -> None:
        from engine.errors import check_option

        check_option(0 <= self.seed < 2 ** 63, "seed", self.seed, "must be 0 or more")


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "--device cuda was asked for, but torch sees no CUDA GPU "
                               f"(torch {torch.__version__}; install a CUDA build, see README)")
    return device


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Run:
    """An open run directory. Create with :func:`start_run`."""

    def __init__(self, root: Path, job: str):
        self.root, self.job = root, job
        self.metrics: dict = {}

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def write_metrics(self, **values) -> None:
        """Merge `values` into metrics.json (nested keys as dicts) and rewrite it atomically."""
        def merge(dst: dict, src: dict):
            for k, v in src.items():
                if isinstance(v, dict) and isinstance(dst.get(k), dict):
                    merge(dst[k], v)
                else:
                    dst[k] = v
        merge(self.metrics, values)
        atomic_write_json(self.path("metrics.json"), self.metrics)


def config_dict(cfg) -> dict:
    d = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    return json.loads(json.dumps(d, default=lambda o: os.fspath(o) if isinstance(o, os.PathLike) else str(o)))


def start_run(job: str, opts: RunOptions, inputs: list[Path] = (), resume: bool = False) -> Run:
    """Create (or reuse with --overwrite or `resume`) the run directory, write config.json, start the log.

    Refuses a run directory inside one of `inputs`, so a job never writes into its input.
    """
    root = Path(opts.out) if opts.out else Path("runs") / f"{job}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    for inp in inputs:
        inp_r, root_r = Path(inp).resolve(), root.resolve()
        if root_r == inp_r or inp_r in root_r.parents or root_r in inp_r.parents:
            raise InputError(root, f"run directory overlaps the input {inp}; choose another --out")
    if root.exists() and not root.is_dir():
        raise InputError(root, "exists and is not a folder")
    existed = root.exists()
    fresh = not existed or not any(root.iterdir())
    if not fresh:
        # Jobs replace their own outputs in a run directory; a folder that is not one of ours
        # may hold the user's files, so it is never written into.
        if not (root / "config.json").is_file():
            raise InputError(root, "exists, is not empty and holds no lumen3d run; choose another --out")
        if not opts.overwrite and not resume:
            raise InputError(root, "already holds a run; pass --overwrite (or --resume) or choose another --out")
    device = resolve_device(opts.device)
    try:
        for sub in ("", *SUBDIRS):
            (root / sub).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(root, f"cannot make the run directory ({e.strerror or e})") from None
    if fresh:
        _FRESH.append((root, existed))
    seed_everything(opts.seed)
    run = Run(root, job)
    _setup_logging(root / "log.txt", logging.DEBUG if opts.debug else logging.INFO)
    atomic_write_json(root / "config.json", {
        "job": job, "config": config_dict(opts), "device": device, "version": __version__,
        "argv": sys.argv, "python": platform.python_version(), "host": platform.node(),
        "started": _dt.datetime.now().isoformat(timespec="seconds")})
    log.info("run directory %s (device %s, seed %d)", root, device, opts.seed)
    return run


_FRESH: list[tuple[Path, bool]] = []  # run directories this process started in (and whether they existed)


def discard_failed_starts() -> None:
    """Remove the run directories this process made that hold no result yet (bad input stopped the
    job early): such a folder is not a run to protect, and the same command, input fixed, must work."""
    import shutil

    logger = logging.getLogger("lumen3d")
    for h in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
        logger.removeHandler(h)
        h.close()
    while _FRESH:
        root, existed = _FRESH.pop()
        if not root.is_dir():
            continue
        results = [p for sub in SUBDIRS if (root / sub).is_dir() for p in (root / sub).rglob("*")]
        extra = [p for p in root.iterdir() if p.name not in (*SUBDIRS, "config.json", "log.txt")]
        if results or extra:
            continue
        if existed:  # the user's empty folder: take back only what we put in it
            for name in ("config.json", "log.txt"):
                (root / name).unlink(missing_ok=True)
            for sub in SUBDIRS:
                shutil.rmtree(root / sub, ignore_errors=True)
        else:
            shutil.rmtree(root, ignore_errors=True)


def _setup_logging(path: Path, level: int) -> None:
    from engine.progress import console
    from rich.logging import RichHandler

    logger = logging.getLogger("lumen3d")
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    logger.setLevel(level)
    logger.propagate = False
    fh = logging.FileHandler(path, encoding="utf-8")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(fh)
    logger.addHandler(RichHandler(console=console, show_path=False, show_time=False, markup=False))
