"""Data-parallel training throughput on 1 and 2 processes of this machine, and what it predicts for
clusters (`lumen3d bench distributed`).

Each case runs under torchrun's launcher, one thread a process, at a fixed batch per process (weak
scaling: N processes see N times the views or rays of a step). A worker times its steps and the part
of them spent in the exchanges; the prediction for N machines adds a ring all-reduce of the measured
bytes over the network to the measured compute of a step.
"""
from __future__ import annotations

import time
from pathlib import Path

LATENCY_S = 50e-6  # one message between machines on a data-centre network (TCP), per ring hop


def worker(case: dict) -> dict:
    """One process of a timed case: `case` has method, data, downscale, gaussians (Gaussians),
    samples (NeRF), warmup and steps. Returns its per-step figures."""
    import torch

    from engine.data import load_dataset
    from engine.registry import KINDS
    from engine.runs import seed_everything
    from engine.training.distributed import Processes

    torch.set_num_threads(1)
    group = Processes.start()
    seed_everything(0)
    kind = KINDS[case["method"]]
    if case["method"] == "gaussians":
        # densification statistics are gathered (and summed) every step, as in the first half of a run,
        # but the count stays put, so every step costs the same; all SH degrees from the fourth step,
        # as for most of a run
        extra = {"init": "box", "init_points": case["gaussians"], "refine_start": 10 ** 9, "sh_degree_interval": 1}
    else:  # the recipe's batch: as many rays as make `samples` samples a step on each process
        extra = {"samples_per_step": case["samples"]}
    cfg = kind.config(data=Path(case["data"]), downscale=case["downscale"], max_steps=100_000, **extra)
    dataset = load_dataset(cfg.data, downscale=cfg.downscale)
    method = kind.method_class()(cfg, device="cpu", dataset=dataset, group=group)
    method.prepare()
    fraction = lambda s: s / cfg.max_steps  # noqa: E731
    for s in range(1, case["warmup"] + 1):
        method.train_step(s, fraction)
    seconds0, bytes0 = group.counters()
    samples = 0.0
    t0 = time.perf_counter()
    for s in range(case["warmup"] + 1, case["warmup"] + case["steps"] + 1):
        scalars = method.train_step(s, fraction)
        samples += scalars.get("rays", 0) * scalars.get("samples_per_ray", 0)
    wall = time.perf_counter() - t0
    seconds, sent = group.counters()
    steps = case["steps"]
    out = {"step_seconds": wall / steps, "exchange_seconds": (seconds - seconds0) / steps,
           "bytes_per_step": (sent - bytes0) / steps}
    if case["method"] == "gaussians":
        out["gaussians"] = len(method.params["means"])
        out["work_per_step"] = cfg.batch_size * group.world  # views
    else:
        # samples, all processes together: what a NeRF step costs (its rays adapt to reach a number
        # of samples, and runs with more rays a step learn faster and march fewer samples a ray)
        out["work_per_step"] = samples / steps
    group.leave()
    return out


def run_case(case: dict, nproc: int) -> dict:
    """`case` on `nproc` processes: rank 0's figures, with `compute_seconds`, the slowest process's
    step less its exchanges (the exchanges of the others include waiting for it)."""
    from torch.distributed.launcher.api import elastic_launch

    from engine.training.launch import local_launch

    config = local_launch(nproc)
    results = elastic_launch(config, worker)(case)
    compute = max(r["step_seconds"] - r["exchange_seconds"] for r in results.values())
    return {**results[0], "compute_seconds": compute}


def ring_seconds(payload: float, machines: int, bandwidth: float, latency: float = LATENCY_S) -> float:
    """A ring all-reduce of `payload` bytes over `machines`: each sends and receives 2(N−1)/N of it,
    in 2(N−1) hops (reduce-scatter, then all-gather)."""
    if machines <= 1:
        return 0.0
    return 2 * (machines - 1) / machines * payload / bandwidth + 2 * (machines - 1) * latency


def predict(one: dict, two: dict, machines: int, bandwidth: float) -> dict:
    """Speed-up in work per second of `machines` machines, each one process like those measured, over
    one: each machine does the work of one of the two processes in the step's compute (the slowest
    process's step less its exchanges; it includes what every process repeats, the optimiser step),
    then a ring all-reduce of the measured bytes crosses the network (none of it hidden behind the
    optimiser, as it partly is here)."""
    step = two["compute_seconds"] + ring_seconds(two["bytes_per_step"], machines, bandwidth)
    rate = machines * (two["work_per_step"] / 2) / step
    speedup = rate / (one["work_per_step"] / one["step_seconds"])
    return {"machines": machines, "step_seconds": step, "speedup": speedup, "efficiency": speedup / machines}
