"""`--nproc N`: the same command on N processes of this machine, started by torchrun's launcher
(torch.distributed.elastic), which watches them and stops the others when one fails."""
from __future__ import annotations

import datetime as _dt
import logging
import os
import signal
import sys
import uuid
from pathlib import Path

from engine.errors import LOST_PEER_STATUS, InputError



def launch(cfg, argv: list[str]) -> int:
    """Run `lumen3d argv` (a `train` command line) on cfg.nproc processes; returns the exit status.
    The run directory is named here, so that all processes and this message agree on it."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    argv = list(argv)
    out = cfg.out
    if out is None:
        out = Path("runs") / f"train-{cfg.kind}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
        argv += ["--out", str(out)]
    config = local_launch(cfg.nproc)
    os.environ["LUMEN3D_LAUNCHER"] = "1"  # the processes leave a lost peer for this one to report
    try:
        elastic_launch(config, sys.executable)("-m", "engine.cli", *argv)
    except ChildFailedError as e:
        rank, failure = root_failure(e.failures)
        if failure.exitcode == LOST_PEER_STATUS:
            why = f"lost contact with the others (none answered within --dist-timeout {cfg.dist_timeout:g} s)"
        elif failure.exitcode > 0:  # it said why, in one line of its own
            return 2 if failure.exitcode == 2 else 1
        else:
            why = f"was {_signal_name(-failure.exitcode)}"
        raise InputError(None, f"process {rank} of {cfg.nproc} {why}, so the run stopped; "
                               f"{resume_hint(Path(out))}") from None
    finally:
        os.environ.pop("LUMEN3D_LAUNCHER", None)
    return 0


def local_launch(nproc: int):
    """torchrun's `--standalone --nproc-per-node nproc`, no restarts, as a launcher configuration."""
    from torch.distributed.launcher.api import LaunchConfig

    # the launcher's own logging (each worker's start and stop) would bury the run's one-line errors
    logging.getLogger("torch.distributed").setLevel(logging.CRITICAL)
    return LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"lumen3d-{uuid.uuid4().hex[:8]}",
                        rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1,
                        start_method="spawn")


def root_failure(failures: dict) -> tuple:
    """(rank, failure) of the process whose end ended the run: one killed by a signal, else one that
    exited with its own error, else one that lost the others. The launcher notices them in the same
    poll, so their times do not tell."""
    def cause(item):
        _, f = item
        return (0 if f.exitcode < 0 else 2 if f.exitcode == LOST_PEER_STATUS else 1), f.timestamp
    return min(failures.items(), key=cause)


def _signal_name(signum: int) -> str:
    try:
        name = signal.Signals(signum).name
    except ValueError:
        return f"stopped by signal {signum}"
    return {"SIGKILL": "killed (SIGKILL: out of memory, or killed by hand)", "SIGTERM": "terminated (SIGTERM)",
            "SIGSEGV": "crashed (SIGSEGV)", "SIGINT": "interrupted"}.get(name, f"stopped by {name}")


def resume_hint(run: Path) -> str:
    """Where a stopped run stands: the step of its last checkpoint and how to continue."""
    import torch

    path = run / "checkpoints" / "last.pt"
    if not path.is_file():
        return f"{run} has no checkpoint yet"
    try:  # memory-mapped: only the step is read, not the scene
        step = int(torch.load(path, mmap=True, weights_only=True)["state"]["loop"]["step"])
    except Exception:
        return f"{path} is its last checkpoint; continue with --resume"
    return f"its checkpoint of step {step} ({path}) continues it with --resume"
