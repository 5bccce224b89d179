"""The CUDA path cannot run without a GPU, but its sources must compile: nvcc for the kernels,
the host compiler for the torch binding. Running and checking them on a GPU is a separate job."""
import os
import shutil
import subprocess
import sysconfig

import pytest

from tests.conftest import REPO

CSRC = REPO / "kernels" / "csrc"


def _need(tool):
    if shutil.which(tool) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not on PATH in CI: the CUDA sources must be compile-checked")
        pytest.skip(f"{tool} not installed")


@pytest.mark.parametrize("name", ["splat_cuda", "nerf_cuda", "mesh_cuda"])
def test_cuda_kernels_compile_with_nvcc(tmp_path, name):
    _need("nvcc")
    r = subprocess.run(["nvcc", "-c", "-std=c++17", "-O3", "-arch=sm_90", "--expt-relaxed-constexpr",
                        f"-I{CSRC}", str(CSRC / f"{name}.cu"), "-o", str(tmp_path / f"{name}.o")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    assert (tmp_path / f"{name}.o").stat().st_size > 10_000


@pytest.mark.parametrize("name", ["splat_cuda", "nerf_cuda", "mesh_cuda"])
def test_cuda_binding_compiles_against_torch(name):
    from torch.utils.cpp_extension import include_paths

    _need("g++")
    cmd = ["g++", "-std=c++20", "-fsyntax-only", f"-I{CSRC}", f"-I{sysconfig.get_paths()['include']}",
           f"-DTORCH_EXTENSION_NAME=lumen3d_{name}", *[f"-I{p}" for p in include_paths()],
           str(CSRC / f"{name}_bind.cpp")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "warning" not in r.stderr, r.stderr[-2000:]
