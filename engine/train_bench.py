"""Training throughput of a method on its own CPU and beside a busy process (`lumen3d bench train`).

The busy process is `yes > /dev/null` in its own session, as a user's other job would be: with
Linux autogroups it gets a fair share of the CPU whatever its nice value.
"""
from __future__ import annotations

import contextlib
import subprocess
import time

PHASES = (("idle", "governed"), ("loaded", "governed"), ("loaded", "one thread"), ("loaded", "fixed threads"))


@contextlib.contextmanager
def busy_process():
    """One single-threaded busy process in its own session, killed on exit."""
    p = subprocess.Popen(["sh", "-c", "exec yes > /dev/null"], start_new_session=True)
    try:
        time.sleep(0.2)
        yield p
    finally:
        p.kill()
        p.wait()


@contextlib.contextmanager
def threading_mode(mode: str):
    """'governed': the engine's thread governor; 'one thread'; 'fixed threads': all of torch's
    threads whatever else runs (the behaviour before the governor). Each phase starts at all threads."""
    import torch

    from engine.threads import governor

    gov = governor()
    enabled = gov.enabled
    gov.enabled = enabled and mode == "governed"
    gov.last = None  # a fresh reading: the last one may predate the load
    torch.set_num_threads(1 if mode == "one thread" else gov.max_threads)
    try:
        yield gov
    finally:
        gov.enabled, gov.threads = enabled, gov.max_threads
        torch.set_num_threads(gov.max_threads)


def time_steps(method, first_step: int, seconds: float, fraction, tick) -> tuple[int, float]:
    """Train for about `seconds`; returns (steps, wall seconds)."""
    t0, k = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        tick()
        method.train_step(first_step + k, fraction)
        k += 1
    return k, time.perf_counter() - t0


def run_bench(method, phases, seconds: float, warmup: int, with_load: bool, progress=None) -> list[dict]:
    """Steps per second of `method` (prepared) in each (load, threading) phase, `seconds` each,
    each from the same state after `warmup` steps (so every phase trains the same scene)."""
    import copy

    from engine.threads import tick

    fraction = lambda s: 0.0  # noqa: E731 - schedules stay at their start
    for step in range(1, warmup + 1):
        method.train_step(step, fraction)
    start = copy.deepcopy(method.state_dict())
    records = []
    for load, mode in phases:
        if load == "loaded" and not with_load:
            continue
        method.load_state_dict(copy.deepcopy(start), "benchmark start")
        with busy_process() if load == "loaded" else contextlib.nullcontext(), threading_mode(mode) as gov:
            steps, wall = time_steps(method, warmup + 1, seconds, fraction, tick)
            records.append({"load": load, "threads": mode, "steps": steps, "seconds": wall,
                            "steps_per_second": steps / wall, "threads_at_end": gov.torch.get_num_threads()})
        if progress:
            progress()
    return records
