"""What `lumen3d bench mesh` times: the whole differentiable mesh chain — rasterize, interpolate UVs
(with their derivatives), texture (linear-mipmap-linear), composite over a white background, antialias —
forward and backward (gradients to the positions and the texture), on the native kernels and on the
torch reference in the same run."""
from __future__ import annotations

import math
import statistics
import time

import torch
from torch import Tensor

from kernels import mesh, mesh_reference as ref


def bench_scene(faces: int, width: int, height: int, seed: int = 0, device: str = "cpu") -> dict[str, Tensor]:
    """A UV sphere of about `faces` triangles, bumpy (so silhouettes and depth vary), filling about
    60% of the view, with a 1024² random texture: clip-space positions (1, V, 4), faces, UVs, texture."""
    g = torch.Generator().manual_seed(seed)
    n_lat = max(2, int(round(math.sqrt(faces / 4))))
    n_lon = max(3, int(round(faces / (2 * n_lat))))
    th = torch.linspace(0, math.pi, n_lat + 1, dtype=torch.float64)
    ph = torch.linspace(0, 2 * math.pi, n_lon + 1, dtype=torch.float64)
    T, P = torch.meshgrid(th, ph, indexing="ij")
    r = 1 + 0.02 * torch.randn(T.shape, generator=g, dtype=torch.float64)
    r[:, -1] = r[:, 0]
    xyz = torch.stack([r * torch.sin(T) * torch.cos(P), r * torch.sin(T) * torch.sin(P), r * torch.cos(T)], -1)
    uv = torch.stack([P / (2 * math.pi), T / math.pi], -1).reshape(-1, 2)
    idx = torch.arange((n_lat + 1) * (n_lon + 1)).view(n_lat + 1, n_lon + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    tri = torch.cat([torch.stack([a, c, b], -1).reshape(-1, 3), torch.stack([b, c, d], -1).reshape(-1, 3)])
    # the camera looks at the origin down −z from 3.2 units; the sphere covers 60% of the height
    focal = 0.6 * height * 3.2 / 2.0
    x, y, z = xyz.reshape(-1, 3).unbind(-1)
    zc = 3.2 - z
    near, far = 0.1, 10.0
    clip = torch.stack([x * 2 * focal / width, y * 2 * focal / height,
                        zc * (far + near) / (far - near) - 2 * far * near / (far - near), zc], -1)
    tex = torch.rand(1, 1024, 1024, 3, generator=g)
    return {"pos": clip.float()[None].to(device), "tri": tri.to(torch.int32).to(device),
            "uv": uv.float()[None].to(device), "tex": tex.to(device)}


def native_chain(pos: Tensor, tri: Tensor, uv: Tensor, tex: Tensor, height: int, width: int,
                 topology: Tensor | None = None) -> Tensor:
    rast, db = mesh.rasterize(pos, tri, (height, width))
    uvs, uv_da = mesh.interpolate(uv, rast, tri, db)
    col = mesh.texture(tex, uvs, uv_da, "linear-mipmap-linear")
    col = torch.where(rast[..., 3:] > 0, col, torch.ones_like(col))  # a white background, as a renderer does
    return mesh.antialias(col, rast, pos, tri, topology)


def reference_chain(pos: Tensor, tri: Tensor, uv: Tensor, tex: Tensor, height: int, width: int,
                    topology: Tensor | None = None, pairs_per_chunk: int = 1 << 24) -> Tensor:
    chunk = max(1, pairs_per_chunk // (height * width))
    rast, db = ref.rasterize(pos, tri, height, width, chunk=chunk)
    uvs, uv_da = ref.interpolate(uv, rast, tri, db)
    col = ref.texture(mesh.mip_pyramid(tex), uvs, uv_da, "linear-mipmap-linear", "wrap")
    col = torch.where(rast[..., 3:] > 0, col, torch.ones_like(col))
    nbr = topology if topology is not None else ref.edge_neighbours(tri)
    return ref.antialias(col, rast.detach(), pos, tri, nbr)


def time_chain(chain, scene: dict[str, Tensor], height: int, width: int, repeats: int,
               device: str = "cpu") -> tuple[float, float]:
    """Median forward and backward ms of `chain` with gradients to the positions and the texture."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    w = torch.randn(1, height, width, 3, generator=torch.Generator().manual_seed(1)).to(device)
    topology = mesh.antialias_topology(scene["tri"])
    fwd, bwd = [], []
    for _ in range(repeats):
        pos = scene["pos"].detach().clone().requires_grad_(True)
        tex = scene["tex"].detach().clone().requires_grad_(True)
        sync()
        t0 = time.perf_counter()
        out = chain(pos, scene["tri"], scene["uv"], tex, height, width, topology)
        sync()
        t1 = time.perf_counter()
        (out * w).sum().backward()
        sync()
        t2 = time.perf_counter()
        fwd.append((t1 - t0) * 1e3)
        bwd.append((t2 - t1) * 1e3)
    return statistics.median(fwd), statistics.median(bwd)


def profile_chain(scene: dict[str, Tensor], height: int, width: int, repeats: int = 5) -> dict[str, float]:
    """Median ms of each op, forward and backward, for a closing note's 'where the time goes'."""
    from torch.autograd.profiler import profile

    topology = mesh.antialias_topology(scene["tri"])
    w = torch.randn(1, height, width, 3, generator=torch.Generator().manual_seed(1))
    totals: dict[str, list[float]] = {}
    for _ in range(repeats):
        pos = scene["pos"].detach().clone().requires_grad_(True)
        tex = scene["tex"].detach().clone().requires_grad_(True)
        with profile() as prof:
            (native_chain(pos, scene["tri"], scene["uv"], tex, height, width, topology) * w).sum().backward()
        per: dict[str, float] = {}
        for e in prof.key_averages():
            if e.key.startswith(("_Rasterize", "_Interpolate", "_Texture", "_Antialias", "aten::avg_pool2d",
                                 "aten::cat", "aten::zeros_like", "aten::mul", "aten::sum")) or "Backward" in e.key:
                per[e.key] = per.get(e.key, 0.0) + e.cpu_time_total / 1e3
        for k, v in per.items():
            totals.setdefault(k, []).append(v)
    return {k: statistics.median(v) for k, v in sorted(totals.items(), key=lambda kv: -statistics.median(kv[1]))}
