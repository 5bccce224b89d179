"""Build the native ops once, on first use (torch.utils.cpp_extension JIT), and cache them.

The build directory is $LUMEN3D_KERNEL_CACHE (default ~/.cache/lumen3d/kernels/<torch version>);
a changed source rebuilds. -march=native is safe here because the build happens on the
machine that runs it.
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

CSRC = Path(__file__).parent / "csrc"


def build_dir() -> Path:
    import torch

    default = Path.home() / ".cache" / "lumen3d" / "kernels" / torch.__version__.replace("+", "_")
    path = Path(os.environ.get("LUMEN3D_KERNEL_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _load_cpu(name: str, source: str, extra: tuple[str, ...] = ()):
    from torch.utils.cpp_extension import load

    out = build_dir()
    if not any(out.glob(f"{name}*.so")):
        print(f"lumen3d: building the CPU kernels {name} in {out} (first use only, about a minute)", file=sys.stderr)
    return load(name=name, sources=[str(CSRC / source)], build_directory=str(out),
                # -fopenmp: at::parallel_for is a header template whose pragmas need it; the
                # extension then shares torch's own libgomp (same soname), so one thread pool.
                extra_cflags=["-O3", "-march=native", "-fopenmp", "-fno-math-errno", *extra],
                extra_ldflags=["-fopenmp"], extra_include_paths=[str(CSRC)], verbose=False)


@functools.lru_cache(maxsize=None)
def cpu_ops():
    """The Gaussian-splatting C++/OpenMP ops module."""
    return _load_cpu("lumen3d_splat_cpu", "splat_cpu.cpp")


@functools.lru_cache(maxsize=None)
def nerf_cpu_ops():
    """The NeRF C++/OpenMP ops module (hash encoding, compositing)."""
    return _load_cpu("lumen3d_nerf_cpu", "nerf_cpu.cpp")


@functools.lru_cache(maxsize=None)
def mesh_cpu_ops():
    """The mesh-rendering C++/OpenMP ops module. No FMA contraction: a shared edge's function must be
    computed identically (negated) by both of its triangles, or pixels on it could be missed or doubled."""
    return _load_cpu("lumen3d_mesh_cpu", "mesh_cpu.cpp", ("-ffp-contract=off",))


def _load_cuda(name: str, sources: list[str], extra: tuple[str, ...] = ()):
    import torch
    from torch.utils.cpp_extension import load

    if not torch.cuda.is_available():
        raise RuntimeError("CUDA kernels need a CUDA build of torch and a visible GPU")
    out = build_dir() / "cuda"
    out.mkdir(exist_ok=True)
    if not any(out.glob(f"{name}*.so")):
        print(f"lumen3d: building the CUDA kernels {name} in {out} (first use only, a few minutes)", file=sys.stderr)
    return load(name=name, sources=[str(CSRC / s) for s in sources], build_directory=str(out), extra_cflags=["-O3"],
                extra_cuda_cflags=["-O3", "--expt-relaxed-constexpr", *extra], extra_include_paths=[str(CSRC)], verbose=False)


@functools.lru_cache(maxsize=None)
def cuda_ops():
    """The Gaussian-splatting CUDA ops module (needs a CUDA build of torch and nvcc; built on first use)."""
    return _load_cuda("lumen3d_splat_cuda", ["splat_cuda_bind.cpp", "splat_cuda.cu"])


@functools.lru_cache(maxsize=None)
def nerf_cuda_ops():
    """The NeRF CUDA ops module."""
    return _load_cuda("lumen3d_nerf_cuda", ["nerf_cuda_bind.cpp", "nerf_cuda.cu"])


@functools.lru_cache(maxsize=None)
def mesh_cuda_ops():
    """The mesh-rendering CUDA ops module (no fused multiply-adds, as on the CPU)."""
    return _load_cuda("lumen3d_mesh_cuda", ["mesh_cuda_bind.cpp", "mesh_cuda.cu"], ("-fmad=false",))
