"""3D Gaussians: the parameters a splatting scene optimises, their initialisation, and their
files — the Inria PLY layout that splat viewers read, and antimatter15's .splat.

Parameters (N Gaussians, SH degree d, K = (d+1)²):
  means (N, 3), log_scales (N, 3), quats (N, 4) wxyz unnormalised, opacity_logits (N,),
  sh_dc (N, 1, 3), sh_rest (N, K-1, 3).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from engine.errors import InputError
from engine.io import atomic_path

SH_C0 = 0.28209479177387814
PARAM_NAMES = ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest")


def rgb_to_sh_dc(rgb: Tensor) -> Tensor:
    return (rgb - 0.5) / SH_C0


def sh_dc_to_rgb(dc: Tensor) -> Tensor:
    return dc * SH_C0 + 0.5


def new_params(means: Tensor, log_scales: Tensor, quats: Tensor, opacity_logits: Tensor, sh_dc: Tensor,
               sh_rest: Tensor) -> dict[str, torch.nn.Parameter]:
    values = dict(zip(PARAM_NAMES, (means, log_scales, quats, opacity_logits, sh_dc, sh_rest)))
    return {k: torch.nn.Parameter(v.detach().float().contiguous()) for k, v in values.items()}


def knn_log_scales(xyz: Tensor, k: int = 3) -> Tensor:
    """log of the RMS distance to the k nearest neighbours, for all three axes (3DGS init)."""
    from scipy.spatial import cKDTree

    pts = xyz.detach().cpu().numpy().astype(np.float64)
    if len(pts) < 2:
        return torch.full((len(pts), 3), math.log(0.01))
    d, _ = cKDTree(pts).query(pts, k=min(k, len(pts) - 1) + 1)
    rms = np.sqrt(np.maximum((d[:, 1:] ** 2).mean(1), 1e-14))
    return torch.from_numpy(np.log(rms)).float()[:, None].repeat(1, 3)


def from_points(xyz: Tensor, rgb: Tensor, sh_degree: int, init_opacity: float = 0.1) -> dict[str, torch.nn.Parameter]:
    """Gaussians at SfM points, isotropic at the neighbour spacing, coloured by the points."""
    n = len(xyz)
    K = (sh_degree + 1) ** 2
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    logit = math.log(init_opacity / (1 - init_opacity))
    return new_params(xyz.float(), knn_log_scales(xyz), quats, torch.full((n,), logit),
                      rgb_to_sh_dc(rgb.float())[:, None, :], torch.zeros(n, K - 1, 3))


def random_in_box(n: int, lo, hi, sh_degree: int, generator: torch.Generator) -> dict[str, torch.nn.Parameter]:
    """n Gaussians uniformly in the box [lo, hi] with random colours (scenes without SfM points)."""
    lo, hi = torch.as_tensor(lo, dtype=torch.float32), torch.as_tensor(hi, dtype=torch.float32)
    xyz = lo + (hi - lo) * torch.rand(n, 3, generator=generator)
    return from_points(xyz, torch.rand(n, 3, generator=generator), sh_degree)


def check_params(params, source) -> dict[str, Tensor]:
    """`params` if it is a complete set of Gaussian parameters (the layout above, one N, an SH
    degree 0..3), else a one-line InputError naming `source`."""
    if not isinstance(params, dict) or not all(isinstance(params.get(k), Tensor) for k in PARAM_NAMES):
        raise InputError(source, f"no Gaussian parameters (needs tensors {', '.join(PARAM_NAMES)})")
    n = len(params["means"]) if params["means"].dim() else -1
    want = {"means": (n, 3), "log_scales": (n, 3), "quats": (n, 4), "opacity_logits": (n,), "sh_dc": (n, 1, 3)}
    for k, shape in want.items():
        if tuple(params[k].shape) != shape:
            raise InputError(source, f"Gaussian parameter {k} has shape {tuple(params[k].shape)}, expected {shape}")
    rest = params["sh_rest"]
    if rest.dim() != 3 or rest.shape[0] != n or rest.shape[2] != 3 or rest.shape[1] not in (0, 3, 8, 15):
        raise InputError(source, f"Gaussian parameter sh_rest has shape {tuple(rest.shape)}, expected (N, 0/3/8/15, 3)")
    return params


# ---------------------------------------------------------------------------------------- Inria PLY
def ply_property_names(sh_degree: int) -> list[str]:
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def _finite(params: dict[str, Tensor], path) -> dict[str, Tensor]:
    """The parameters on the CPU as float32; refused when any is NaN or infinite (a diverged
    scene would otherwise be written as one viewers show as garbage or not at all)."""
    p = {k: v.detach().cpu().float() for k, v in params.items()}
    n = len(p["means"])
    bad = torch.zeros(n, dtype=torch.bool)
    for v in p.values():
        if v.numel():
            bad |= ~torch.isfinite(v.reshape(n, -1)).all(1)
    bad = int(bad.sum())
    if bad:
        raise InputError(path, f"not written: {bad} Gaussians have NaN or infinite parameters")
    return p


def save_ply(params: dict[str, Tensor], path: str | os.PathLike) -> None:
    """Binary little-endian float32 PLY in the Inria 3DGS layout: f_rest is channel-major
    (all red coefficients, then green, then blue), opacity is a logit, scales are logs, and
    rotations are unnormalised wxyz."""
    p = _finite(params, path)
    n = len(p["means"])
    K1 = p["sh_rest"].shape[1]
    sh_degree = int(round(math.sqrt(K1 + 1))) - 1
    cols = [p["means"], torch.zeros(n, 3), p["sh_dc"].reshape(n, 3),
            p["sh_rest"].transpose(1, 2).reshape(n, 3 * K1), p["opacity_logits"][:, None], p["log_scales"], p["quats"]]
    data = torch.cat(cols, 1).numpy().astype("<f4")
    names = ply_property_names(sh_degree)
    assert data.shape[1] == len(names)
    header = "ply\nformat binary_little_endian 1.0\n" + f"element vertex {n}\n" + \
             "".join(f"property float {name}\n" for name in names) + "end_header\n"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(np.ascontiguousarray(data).tobytes())


def load_ply(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read an Inria-layout PLY (ours or another tool's); the SH degree follows from f_rest."""
    from engine.data.ply import read_ply_vertices

    path = Path(path)
    v = read_ply_vertices(path)
    missing = [k for k in ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1",
                           "scale_2", "rot_0", "rot_1", "rot_2", "rot_3") if k not in v]
    if missing:
        raise InputError(path, f"not a Gaussian-splat PLY: missing properties {', '.join(missing)}")
    n_rest = len([k for k in v if k.startswith("f_rest_")])
    if any(f"f_rest_{i}" not in v for i in range(n_rest)):
        raise InputError(path, f"f_rest properties are not numbered 0..{n_rest - 1}")
    K1 = n_rest // 3
    if n_rest % 3 or int(round(math.sqrt(K1 + 1))) ** 2 != K1 + 1 or int(round(math.sqrt(K1 + 1))) - 1 > 3:
        raise InputError(path, f"{n_rest} f_rest properties do not match an SH degree 0..3")
    col = lambda *names: torch.from_numpy(np.stack([v[k] for k in names], 1).astype(np.float32))  # noqa: E731
    n = len(v["x"])
    out = {"means": col("x", "y", "z"), "log_scales": col("scale_0", "scale_1", "scale_2"),
           "quats": col("rot_0", "rot_1", "rot_2", "rot_3"), "opacity_logits": col("opacity")[:, 0],
           "sh_dc": col("f_dc_0", "f_dc_1", "f_dc_2").reshape(n, 1, 3),
           "sh_rest": (col(*[f"f_rest_{i}" for i in range(n_rest)]).reshape(n, 3, K1).transpose(1, 2).contiguous()
                       if n_rest else torch.zeros(n, 0, 3))}
    for k, t in out.items():
        if not torch.isfinite(t).all():
            raise InputError(path, f"non-finite values in {k}")
    return out


def save_splat(params: dict[str, Tensor], path: str | os.PathLike) -> None:
    """antimatter15's .splat: 32 bytes per Gaussian — position (3 float32), scale (3 float32,
    linear), RGBA (4 uint8, colour from the SH DC term), rotation (4 uint8, wxyz mapped from
    [-1, 1] to [0, 255]) — sorted by size × opacity, largest first, as its converter does."""
    p = _finite(params, path)
    scales = torch.exp(p["log_scales"])
    alpha = torch.sigmoid(p["opacity_logits"])
    order = torch.argsort(-(scales.prod(1) * alpha), stable=True)
    rgb = sh_dc_to_rgb(p["sh_dc"][:, 0])
    rgba = torch.cat([rgb, alpha[:, None]], 1).clamp(0, 1).mul(255).round().to(torch.uint8)
    q = p["quats"] / p["quats"].norm(dim=1, keepdim=True)
    rot = (q * 128 + 128).round().clamp(0, 255).to(torch.uint8)
    rec = np.zeros(len(order), dtype=[("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
    rec["pos"], rec["scale"] = p["means"][order].numpy(), scales[order].numpy()
    rec["rgba"], rec["rot"] = rgba[order].numpy(), rot[order].numpy()
    with atomic_path(path) as tmp:
        tmp.write_bytes(rec.tobytes())


def load_splat(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read antimatter15's .splat (degree-0 colour; opacity and rotation quantised to 8 bits)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    data = path.read_bytes()
    if not data or len(data) % 32:
        raise InputError(path, f"not a .splat file: {len(data)} bytes is not a positive multiple of 32")
    rec = np.frombuffer(data, dtype=[("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
    if not (np.isfinite(rec["pos"]).all() and np.isfinite(rec["scale"]).all()) or (rec["scale"] <= 0).any():
        raise InputError(path, "non-finite positions or non-positive scales")
    rgba = torch.from_numpy(rec["rgba"].astype(np.float32) / 255.0)
    alpha = rgba[:, 3].clamp(0.5 / 255, 1 - 0.5 / 255)
    quats = torch.from_numpy((rec["rot"].astype(np.float32) - 128.0) / 128.0)
    quats[quats.norm(dim=1) == 0, 0] = 1.0
    n = len(rec)
    return {"means": torch.from_numpy(rec["pos"].copy()), "log_scales": torch.from_numpy(np.log(rec["scale"])),
            "quats": quats, "opacity_logits": torch.log(alpha / (1 - alpha)),
            "sh_dc": rgb_to_sh_dc(rgba[:, :3]).reshape(n, 1, 3), "sh_rest": torch.zeros(n, 0, 3)}
