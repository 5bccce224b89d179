"""Our kernels check their own preconditions: a bad call is an exception, never a crash. Every call
runs in one child process, so a missing check fails this test instead of killing the suite."""
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = r'''
import torch
from kernels._build import cpu_ops, nerf_cpu_ops

s, n = cpu_ops(), nerf_cpu_ops()
f, i32, i64 = torch.float32, torch.int32, torch.int64
z = lambda *shape, dtype=f: torch.zeros(*shape, dtype=dtype)
eye4, K = torch.eye(4), torch.tensor([[10.0, 0, 4], [0, 10.0, 4], [0, 0, 1]])
calls = {
    "project: quats of another length": lambda: s.project_fwd(z(5, 3), z(4, 4), z(5, 3), eye4, K, 8, 8, 0.01, 1e10, 0.3, False),
    "project: quats with 3 values": lambda: s.project_fwd(z(5, 3), z(5, 3), z(5, 3), eye4, K, 8, 8, 0.01, 1e10, 0.3, False),
    "project: negative width": lambda: s.project_fwd(z(5, 3), z(5, 4), z(5, 3), eye4, K, -4, 8, 0.01, 1e10, 0.3, False),
    "project: zero focal": lambda: s.project_fwd(z(5, 3), z(5, 4), z(5, 3), eye4, z(3, 3), 8, 8, 0.01, 1e10, 0.3, False),
    "project: near 0": lambda: s.project_fwd(z(5, 3), z(5, 4), z(5, 3), eye4, K, 8, 8, 0.0, 1e10, 0.3, False),
    "project: mixed dtypes": lambda: s.project_fwd(z(5, 3), z(5, 4, dtype=torch.float64), z(5, 3), eye4, K, 8, 8, 0.01,
                                                   1e10, 0.3, False),
    "project_bwd: short gradient": lambda: s.project_bwd(z(5, 3), z(5, 4), z(5, 3), eye4, K, 8, 8, 0.01, 1e10, 0.3,
                                                         False, z(5, dtype=i32), z(2, 2), z(5, 3), z(5), z(5), False),
    "sh: means of another length": lambda: s.sh_fwd(z(5, 16, 3), z(4, 3), z(3), 3),
    "sh: degree 9": lambda: s.sh_fwd(z(5, 16, 3), z(5, 3), z(3), 9),
    "sh_bwd: short gradient": lambda: s.sh_bwd(z(5, 16, 3), z(5, 3), z(3), 3, z(2, 3)),
    "bin: radii float": lambda: s.bin_gaussians(z(5, 2), z(5), z(5), 8, 8),
    "bin: zero height": lambda: s.bin_gaussians(z(5, 2), z(5, dtype=i32), z(5), 8, 0),
    "raster: ids out of range": lambda: s.raster_fwd(z(2, 2), z(2, 3), z(2, 3), z(2), z(2), z(3),
                                                     torch.tensor([0, 1]), torch.tensor([7], dtype=i32), 8, 8),
    "raster: offsets past the ids": lambda: s.raster_fwd(z(2, 2), z(2, 3), z(2, 3), z(2), z(2), z(3),
                                                         torch.tensor([0, 5]), torch.tensor([0], dtype=i32), 8, 8),
    "raster: wrong tile count": lambda: s.raster_fwd(z(2, 2), z(2, 3), z(2, 3), z(2), z(2), z(3),
                                                     torch.tensor([0, 0, 0]), z(0, dtype=i32), 8, 8),
    "raster: background of 2 channels": lambda: s.raster_fwd(z(2, 2), z(2, 3), z(2, 3), z(2), z(2), z(2),
                                                             torch.tensor([0, 0]), z(0, dtype=i32), 8, 8),
    "raster_bwd: image of another size": lambda: s.raster_bwd(
        z(2, 2), z(2, 3), z(2, 3), z(2), z(2), z(3), torch.tensor([0, 0]), z(0, dtype=i32), torch.tensor([0, 0, 0]),
        z(0, dtype=i64), 8, 8, z(4, 4), z(4, 4, dtype=i32), z(4, 4, 3), z(4, 4), z(4, 4), False),
    "march: grid of res 0": lambda: n.march_rays(z(3, 3, dtype=torch.float64), z(3, 3, dtype=torch.float64),
                                                 z(3, dtype=torch.float64), z(3, dtype=torch.float64) + 1,
                                                 torch.zeros(1, 0, 0, 0, dtype=torch.uint8), z(3), z(3) + 1, 0.01,
                                                 1e10, 0.0),
    "march: zero step": lambda: n.march_rays(z(3, 3, dtype=torch.float64), z(3, 3, dtype=torch.float64) + 1,
                                             z(3, dtype=torch.float64), z(3, dtype=torch.float64) + 1,
                                             torch.ones(1, 4, 4, 4, dtype=torch.uint8), z(3), z(3) + 1, 0.0, 1e10, 0.0),
    "march: NaN origins": lambda: n.march_rays(torch.full((3, 3), float("nan"), dtype=torch.float64),
                                               z(3, 3, dtype=torch.float64) + 1, z(3, dtype=torch.float64),
                                               z(3, dtype=torch.float64) + 1, torch.ones(1, 4, 4, 4, dtype=torch.uint8),
                                               z(3), z(3) + 1, 0.01, 1e10, 0.0),
    "march: directions of another length": lambda: n.march_rays(z(3, 3, dtype=torch.float64), z(2, 3, dtype=torch.float64),
                                                                z(3, dtype=torch.float64), z(3, dtype=torch.float64) + 1,
                                                                torch.ones(1, 4, 4, 4, dtype=torch.uint8), z(3), z(3) + 1,
                                                                0.01, 1e10, 0.0),
    "march: negative half-size": lambda: n.march_rays(z(3, 3, dtype=torch.float64), z(3, 3, dtype=torch.float64) + 1,
                                                      z(3, dtype=torch.float64), z(3, dtype=torch.float64) + 1,
                                                      torch.ones(1, 4, 4, 4, dtype=torch.uint8), z(3), z(3) - 1, 0.01,
                                                      1e10, 0.0),
    "composite: offsets past the samples": lambda: n.composite_fwd(z(4), z(4, 3), z(4), z(4), torch.tensor([0, 9]), 1e-4),
    "composite: decreasing offsets": lambda: n.composite_fwd(z(4), z(4, 3), z(4), z(4), torch.tensor([0, 3, 1, 4]), 1e-4),
    "composite: rgbs of another length": lambda: n.composite_fwd(z(4), z(3, 3), z(4), z(4), torch.tensor([0, 4]), 1e-4),
    "composite_bwd: short gradient": lambda: n.composite_bwd(z(4), z(4, 3), z(4), z(4), torch.tensor([0, 4]), 1e-4,
                                                             z(1, 3), z(1), z(1), z(2, 3), z(1), z(1)),
    "hash: level count": lambda: n.hash_encode_fwd(z(5, 3), z(2, 64, 2), torch.tensor([3.0]), torch.tensor([5]),
                                                   torch.tensor([True])),
    "hash: dense level larger than the table": lambda: n.hash_encode_fwd(z(5, 3), z(1, 8, 2), torch.tensor([15.0]),
                                                                         torch.tensor([16]), torch.tensor([True])),
    "hash: points with 2 coordinates": lambda: n.hash_encode_fwd(z(5, 2), z(1, 64, 2), torch.tensor([3.0]),
                                                                 torch.tensor([4]), torch.tensor([True])),
    "hash_bwd: short gradient": lambda: n.hash_encode_bwd(z(5, 3), z(1, 64, 2), torch.tensor([3.0]), torch.tensor([4]),
                                                          torch.tensor([True]), z(2, 2), True),
}
for name, call in calls.items():
    try:
        call()
        print("NO ERROR:", name, flush=True)
    except (RuntimeError, ValueError, TypeError) as e:
        print("refused:", name, "|", str(e).splitlines()[0][:100], flush=True)
# NaN positions in the hash encoding are clamped like any outside point: a value, not a wild read
out = n.hash_encode_fwd(torch.full((2, 3), float("nan")), torch.ones(1, 64, 2), torch.tensor([3.0]),
                        torch.tensor([4]), torch.tensor([True]))
print("nan positions:", out.tolist(), flush=True)
print("DONE", flush=True)
'''


def test_bad_kernel_calls_raise_and_never_crash():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=REPO, timeout=600,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", **_keep_env()})
    assert r.returncode == 0 and "DONE" in r.stdout, (r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    assert "NO ERROR" not in r.stdout, r.stdout
    assert r.stdout.count("refused:") == SCRIPT.count('lambda: ')
    assert "nan positions: [[1.0, 1.0], [1.0, 1.0]]" in r.stdout


def _keep_env():
    import os

    return {k: v for k, v in os.environ.items() if k.startswith(("LUMEN3D", "HOME", "OMP", "CC", "CXX", "TORCH"))}
