"""Training one scene on two processes (gloo, this machine): the same result as one process with both
shares, rank 0 alone writing, a killed process ending the run with a resumable checkpoint."""
import os
import time

import pytest
import torch

from tests.conftest import run_cli

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
ENV = {**os.environ, "LUMEN3D_THREADS": "fixed"}  # one thread count throughout: reproducible runs

GAUSSIANS = ["--downscale", "8", "--max-steps", "30", "--init-points", "2000", "--refine-start", "5",
             "--refine-every", "10", "--checkpoint-every", "10", "--eval-views", "4", "--video-frames", "4"]
NERF = ["--downscale", "8", "--max-steps", "20", "--log2-table", "14", "--grid-res", "32", "--samples-per-step",
        "1000000", "--eval-views", "2", "--video-frames", "0", "--mesh-resolution", "0"]


def train(tmp_path, name, kind, args, data, nproc=1):
    out = tmp_path / name
    r = run_cli("train", kind, data / "lego", *args, "--nproc", nproc, "--out", out, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def state(out):
    return torch.load(out / "checkpoints" / "last.pt", weights_only=True)["state"]["method"]


def metrics(out):
    import json

    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("strategy", ["adc", "mcmc"])
def test_two_processes_of_one_view_equal_one_process_of_two(tmp_path, data, strategy):
    args = [*GAUSSIANS, "--strategy", strategy, "--cap-max", "2500", "--random-background"]
    two = train(tmp_path, "two", "gaussians", [*args, "--batch-size", "1"], data, nproc=2)
    one = train(tmp_path, "one", "gaussians", [*args, "--batch-size", "2"], data)
    a, b = state(two)["params"], state(one)["params"]
    n0 = 2000
    assert len(a["means"]) != n0, "densification did not run: the test would not cover it"
    for k in a:
        assert a[k].shape == b[k].shape, k
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    # and a single view per step is a different run, so agreement above is not by chance
    single = train(tmp_path, "single", "gaussians", [*args, "--batch-size", "1"], data)
    c = state(single)["params"]["means"]
    assert c.shape != a["means"].shape or (c - a["means"]).abs().max() > 1e-3
    m = metrics(two)
    assert m["processes"]["count"] == 2 and m["processes"]["exchange_bytes"] > 0
    # the evaluation, shared between the processes, scores the same renders as one process does
    assert m["test"]["psnr"] == pytest.approx(metrics(one)["test"]["psnr"], abs=1e-4)
    assert m["test"]["views"] == 4


def test_nerf_two_processes_equal_one_with_all_rays(tmp_path, data):
    two = train(tmp_path, "two", "nerf", [*NERF, "--max-rays", "256"], data, nproc=2)
    one = train(tmp_path, "one", "nerf", [*NERF, "--max-rays", "512"], data)
    a, b = state(two), state(one)
    assert a["rays"] == b["rays"] == 20 * 512
    moved = 0.0
    for k in a["field"]:
        diff = (a["field"][k] - b["field"][k]).abs().max().item()
        # Adam's first steps are ±lr wherever a gradient is not zero: sums in another order flip
        # the sign of a few vanishing ones, so the table is compared by its norm as well
        assert diff < 5e-3, (k, diff)
        moved = max(moved, diff)
    ta, tb = a["field"]["table"], b["field"]["table"]
    assert (ta - tb).norm() / (tb.norm() + 1e-12) < 1e-3
    torch.testing.assert_close(a["grid"]["bits"], b["grid"]["bits"], atol=0, rtol=0)


def test_rank_zero_alone_writes(tmp_path, data):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    r = run_cli("train", "gaussians", data / "lego", *GAUSSIANS, "--nproc", "2", cwd=cwd, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = list((cwd / "runs").iterdir())
    assert [p.name for p in cwd.iterdir()] == ["runs"] and len(runs) == 1  # the launcher named one run
    out = runs[0]
    assert len(list((out / "tensorboard").iterdir())) == 1
    assert sorted(p.name for p in (out / "renders" / "test").iterdir()) == [f"{i:04d}.png" for i in range(4)]
    assert (out / "renders" / "video.mp4").stat().st_size > 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt"]
    lines = (out / "log.txt").read_text()
    assert "training on 2 processes (gloo), 1 thread(s) each" in lines
    # the one progress bar is rank 0's
    assert r.stderr.count("evaluating test views") == 1


def test_a_killed_process_ends_the_run_with_a_resumable_checkpoint(tmp_path, data):
    out = tmp_path / "run"
    args = ["train", "gaussians", data / "lego", *GAUSSIANS, "--nproc", "2", "--out", out]
    t = time.monotonic()
    r = run_cli(*args, "--kill-at-step", "15", "--kill-rank", "1", env=ENV, timeout=120)
    assert time.monotonic() - t < 90
    assert r.returncode == 2
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert any("process 1 of 2 was killed" in ln and "step 10" in ln and "--resume" in ln for ln in errors), r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli(*args, "--resume", env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in (out / "log.txt").read_text()


def test_resume_after_killing_every_process_equals_an_uninterrupted_run(tmp_path, data):
    args = [*GAUSSIANS, "--strategy", "mcmc", "--cap-max", "2500"]
    whole = train(tmp_path, "whole", "gaussians", args, data, nproc=2)
    out = tmp_path / "killed"
    cmd = ["train", "gaussians", data / "lego", *args, "--nproc", "2", "--out", out]
    r = run_cli(*cmd, "--kill-at-step", "25", env=ENV)
    assert r.returncode == 2 and "killed" in r.stderr
    assert state(out)["params"]["means"].shape != state(whole)["params"]["means"].shape or \
        not torch.equal(state(out)["params"]["means"], state(whole)["params"]["means"])
    r = run_cli(*cmd, "--resume", env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = state(whole)["params"], state(out)["params"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and a two-process checkpoint is not resumed on one process, whose steps would see half the views
    r = run_cli(*cmd[:-4], "--out", out, "--resume", env=ENV)
    assert r.returncode == 2 and "resume it on as many (--nproc 2)" in r.stderr


def test_bad_input_is_said_once(tmp_path, data):
    r = run_cli("train", "gaussians", tmp_path / "nowhere", "--nproc", "2", env=ENV)
    assert r.returncode == 2 and r.stderr.count("error") == 1 and "dataset not found" in r.stderr
    out = tmp_path / "taken"
    train(tmp_path, "taken", "gaussians", [*GAUSSIANS, "--max-steps", "2", "--eval-views", "1", "--video-frames", "0"],
          data)
    r = run_cli("train", "gaussians", data / "lego", *GAUSSIANS, "--nproc", "2", "--out", out, env=ENV)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("lumen3d:")]
    assert len(lines) == 1 and "already holds a run" in lines[0], r.stderr


# ---------------------------------------------------------------------- the exchanges themselves
def _exchanges(rank: int, port: int, folder: str) -> None:
    """One of two processes: every exchange of engine.training.distributed on its own inputs."""
    import time as _time

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_WORLD_SIZE="2")
    torch.set_num_threads(1)
    from engine.errors import PeerLost, Silent
    from engine.training.distributed import COALESCE, Processes
    from scenes.nerf import OccupancyGrid

    group = Processes.start(timeout_s=4)
    gen = torch.Generator().manual_seed(rank)
    inputs = [torch.randn(COALESCE + 3, generator=gen), torch.randn(5, generator=gen),
              torch.randn(2, 3, generator=gen, dtype=torch.float64), torch.randn((), generator=gen)]
    summed, maxed = [t.clone() for t in inputs], [t.clone() for t in inputs]
    group.all_reduce(summed)
    group.all_reduce(maxed, "max")
    out = {"inputs": inputs, "summed": summed, "maxed": maxed,
           "gathered": group.gather_bytes(b"" if rank == 0 else bytes(range(256)) * 3),
           "objects": group.gather({"rank": rank, "t": torch.full((rank + 1,), float(rank))}),
           "broadcast": group.broadcast_bytes(b"from rank 0" if rank == 0 else b"ignored"),
           "empty": group.broadcast_bytes(None)}
    try:
        group.agree("rank 0 could not start" if rank == 0 else None)
        out["agree"] = "no error"
    except Silent as e:
        out["agree"] = f"silent: {e}"
    # the occupancy grid's cells, evaluated half by each process, as one process evaluates them all
    grids = [OccupancyGrid(torch.zeros(3), torch.ones(3), 0.01, res=64) for _ in range(2)]
    for grid, part in zip(grids, [(rank, 2), (0, 1)]):
        for step in (0, 16):
            grid.update(lambda x: (x * 7).sin().sum(1).exp(), step, torch.Generator().manual_seed(step), 50_000,
                        part=part, reduce=lambda x: group.all_reduce([x]))
    out["grid"] = [(g.density.clone(), g.bits.clone()) for g in grids]
    # a process that stops answering: the other gives up after the timeout, with a one-line error
    t = _time.monotonic()
    try:
        if rank == 1:
            _time.sleep(8)
        group.all_reduce([torch.ones(3)])
        out["timeout"] = "answered"
    except PeerLost as e:
        out["timeout"] = f"{_time.monotonic() - t:.1f} s: {e}"
    out = {k: (v.hex() if isinstance(v, bytes) else [b.hex() for b in v] if k == "gathered" and v else v)
           for k, v in out.items()}  # a checkpoint-safe load takes no bytes
    torch.save(out, f"{folder}/{rank}.pt")


def test_exchanges_between_two_processes(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_exchanges, args=(port, str(tmp_path)), nprocs=2, start_method="spawn")
    r = [torch.load(tmp_path / f"{k}.pt", weights_only=True) for k in range(2)]
    for k in range(2):
        for a, b, s, m in zip(r[0]["inputs"], r[1]["inputs"], r[k]["summed"], r[k]["maxed"]):
            torch.testing.assert_close(s, a + b, rtol=0, atol=0)
            torch.testing.assert_close(m, torch.maximum(a, b), rtol=0, atol=0)
        assert r[k]["broadcast"] == b"from rank 0".hex() and r[k]["empty"] == ""
        d0, b0 = r[k]["grid"][0]
        d1, b1 = r[k]["grid"][1]
        assert torch.equal(d0, d1) and torch.equal(b0, b1) and 0 < b0.float().mean() < 1
    assert r[0]["gathered"] == ["", (bytes(range(256)) * 3).hex()] and r[1]["gathered"] is None
    objects = r[0]["objects"]
    assert [o["rank"] for o in objects] == [0, 1] and torch.equal(objects[1]["t"], torch.ones(2))
    assert r[0]["agree"] == "no error" and r[1]["agree"] == "silent: rank 0 could not start"
    # rank 0 gave up after the 4 s timeout, in one line naming what it was doing
    assert r[0]["timeout"].split(" s: ")[1].startswith("all-reduce: lost contact with another process"), r[0]
    assert 3.5 < float(r[0]["timeout"].split(" s")[0]) < 7.5, r[0]["timeout"]


def test_bench_distributed_measures_both_process_counts(tmp_path, data):
    import json

    out = tmp_path / "b.json"
    r = run_cli("bench", "distributed", "--data", data / "lego", "--gaussians", "3000", "--gaussians-downscale", "8",
                "--nerf-downscale", "8", "--warmup", "1", "--steps", "2", "--repeats", "1", "--json", out, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    records = json.loads(out.read_text())
    assert [x["case"] for x in records] == ["gaussians 3,000", "nerf 65,536 samples"]
    for x in records:
        one, two = x["one_process"], x["two_processes"]
        assert one["bytes_per_step"] == 0 and one["exchange_seconds"] == 0
        assert two["bytes_per_step"] > 0 and 0 < two["exchange_seconds"] < two["step_seconds"]
        assert x["speedup_two"] > 0 and [e["machines"] for e in x["estimates"]] == [8, 32]
    g = records[0]["two_processes"]
    # every parameter's gradient (59 floats a Gaussian) and the densification statistics (3), float32
    assert g["bytes_per_step"] == pytest.approx(3000 * (59 + 3) * 4, rel=0.01)


def test_cluster_prediction_is_a_ring_all_reduce_after_the_compute():
    from engine.distributed_bench import predict, ring_seconds

    assert ring_seconds(1e9, 1, 1e9) == 0
    assert ring_seconds(1e9, 4, 1e9, latency=0) == pytest.approx(1.5)  # 2·3/4 of the bytes each way
    assert ring_seconds(0, 4, 1e9, latency=1e-3) == pytest.approx(6e-3)  # 2·(N − 1) hops
    one = {"work_per_step": 1, "step_seconds": 1.0}
    two = {"work_per_step": 2, "compute_seconds": 1.0, "bytes_per_step": 1e9}
    e = predict(one, two, 8, bandwidth=1.75e9)  # 2·7/8 GB at 1.75 GB/s: one second (and 14 hops)
    assert e["step_seconds"] == pytest.approx(2.0 + 14 * 50e-6)
    assert e["speedup"] == pytest.approx(8 / e["step_seconds"]) and e["efficiency"] == pytest.approx(1 / e["step_seconds"])


def test_the_launcher_reports_the_process_whose_end_ended_the_run():
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    from engine.errors import LOST_PEER_STATUS
    from engine.training.launch import root_failure

    lost, killed, said = (ProcessFailure(0, 10, LOST_PEER_STATUS, ""), ProcessFailure(1, 11, -9, ""),
                          ProcessFailure(2, 12, 2, ""))
    assert root_failure({0: lost, 1: killed, 2: said})[0] == 1  # a signal first
    assert root_failure({0: lost, 2: said})[0] == 2  # then a process that said why
    assert root_failure({0: lost})[0] == 0


def test_bench_distributed_refuses_a_folder_that_is_no_dataset_in_one_line(tmp_path):
    r = run_cli("bench", "distributed", "--data", tmp_path, env=ENV)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and str(tmp_path) in r.stderr, r.stderr
