import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data() -> Path:
    assert (DATA / "lego").is_dir() and (DATA / "fern").is_dir(), f"real scenes missing under {DATA}"
    return DATA


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory):
    # Downscaled copies go to a per-session cache, never to ~ or the dataset.
    os.environ["LUMEN3D_CACHE"] = str(tmp_path_factory.mktemp("cache"))


def run_cli(*args, cwd=None, timeout=600, env=None) -> subprocess.CompletedProcess:
    """Run `lumen3d ARGS` as a user would, in a fresh process (environment `env`, default ours)."""
    env = {**(os.environ if env is None else env), "COLUMNS": "200", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=env)


def killed_and_resumed(args, tmp_path: Path, kill_at: int) -> tuple[dict, dict]:
    """Run `lumen3d ARGS` whole into tmp_path/whole, and again into tmp_path/killed SIGKILLed at step
    `kill_at` then resumed; returns both final checkpoints' method states. One thread count
    throughout: results are reproducible for a given count, and a busy machine would otherwise
    change it between the runs (engine/threads.py)."""
    import torch

    env = {**os.environ, "LUMEN3D_THREADS": "fixed"}
    r = run_cli(*args, "--out", tmp_path / "whole", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    r = run_cli(*args, "--out", tmp_path / "killed", "--kill-at-step", str(kill_at), env=env)
    assert r.returncode == -9
    r = run_cli(*args, "--out", tmp_path / "killed", "--resume", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in (tmp_path / "killed" / "log.txt").read_text()
    return tuple(torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=True)["state"]["method"]
                 for d in ("whole", "killed"))


def tree_digest(root: Path) -> str:
    """Hash of every file's path, bytes and mode below root: proves an input was not touched."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
            h.update(str(p.stat().st_mode).encode())
    return h.hexdigest()


def assert_one_clear_line(r: subprocess.CompletedProcess, expected) -> None:
    """Bad input: exit code 2, one `lumen3d: error:` line holding every expected part, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("lumen3d: error:")]
    assert len(lines) == 1, r.stderr[-2000:]
    for part in expected:
        assert part in lines[0], (part, lines[0])
    assert "Traceback" not in r.stderr


def quality(name: str, value: float, op: str, threshold: float) -> None:
    """Assert a quality figure against its threshold and print it as one `QUALITY` line, so that a run
    with `-s` lists every quality figure the suite checks (how the thresholds' margins were measured)."""
    ok = value > threshold if op == ">" else value < threshold
    print(f"\nQUALITY {name} = {value:.4g} (must be {op} {threshold:g})")
    assert ok, f"{name} = {value:.4g}, must be {op} {threshold:g}"
