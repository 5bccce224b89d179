"""Physically based shading in torch: Lambert and Cook-Torrance GGX (glTF's metallic-roughness
model), point lights, and image-based lighting by the split-sum approximation — an environment's
irradiance as 9 spherical-harmonic coefficients, its specular light prefiltered with the GGX lobe at a
few roughness levels, and a BRDF lookup table. The table and prefiltered maps are computed here on
first use and cached ($LUMEN3D_CACHE/pbr); nothing is downloaded.

Environment maps are equirectangular with +z up (the engine's generation frame): the top row looks
at +z, u = ½ + atan2(y, x)/2π. Colours are linear radiance; `srgb_to_linear` decodes base colours.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from engine.data.images import cache_dir
from engine.io import atomic_path

MIN_ROUGHNESS = 0.04  # α = r² below this is a mirror the prefiltered maps cannot resolve


def srgb_to_linear(x: Tensor) -> Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055).clamp_min(1e-8) ** 2.4)


def linear_to_srgb(x: Tensor) -> Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-8) ** (1 / 2.4) - 0.055)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1, keepdim=True)


def ggx_distribution(n_dot_h: Tensor, alpha: Tensor) -> Tensor:
    a2 = alpha * alpha
    d = n_dot_h * n_dot_h * (a2 - 1) + 1
    return a2 / (math.pi * d * d).clamp_min(1e-12)


def smith_visibility(n_dot_v: Tensor, n_dot_l: Tensor, alpha: Tensor) -> Tensor:
    """Height-correlated Smith G / (4 n·v n·l) (Heitz 2014), as Filament and glTF's reference use."""
    a2 = alpha * alpha
    gv = n_dot_l * torch.sqrt(n_dot_v * n_dot_v * (1 - a2) + a2)
    gl = n_dot_v * torch.sqrt(n_dot_l * n_dot_l * (1 - a2) + a2)
    return 0.5 / (gv + gl).clamp_min(1e-12)


def fresnel_schlick(f0: Tensor, cos: Tensor) -> Tensor:
    return f0 + (1 - f0) * (1 - cos).clamp(0, 1) ** 5


def direct_light(base: Tensor, roughness: Tensor, metallic: Tensor, n: Tensor, v: Tensor, l: Tensor,
                 radiance: Tensor) -> Tensor:
    """Outgoing radiance from one light: (Lambert + GGX specular) · radiance · n·l. All (..., 3) or (..., 1)."""
    alpha = roughness.clamp_min(MIN_ROUGHNESS) ** 2
    h = F.normalize(v + l, dim=-1)
    n_dot_l, n_dot_v = _dot(n, l).clamp_min(0), _dot(n, v).clamp(1e-4, 1)
    f0 = 0.04 * (1 - metallic) + base * metallic
    fres = fresnel_schlick(f0, _dot(v, h).clamp_min(0))
    spec = ggx_distribution(_dot(n, h).clamp_min(0), alpha) * smith_visibility(n_dot_v, n_dot_l, alpha) * fres
    diffuse = (1 - fres) * base * (1 - metallic) / math.pi
    return (diffuse + spec) * radiance * n_dot_l


# ------------------------------------------------------------------------------ sampling helpers
def _hammersley(n: int) -> Tensor:
    i = torch.arange(n, dtype=torch.int64)
    bits = i.clone()
    rev = torch.zeros(n, dtype=torch.int64)
    for _ in range(32):
        rev = (rev << 1) | (bits & 1)
        bits >>= 1
    return torch.stack([(i.double() + 0.5) / n, rev.double() / 2.0 ** 32], -1)


def _ggx_half_vectors(n: int, alpha: float) -> Tensor:
    """n half vectors around +z, importance-sampled from the GGX distribution (z = cos θ_h)."""
    xi = _hammersley(n)
    phi = 2 * math.pi * xi[:, 0]
    cos_t = torch.sqrt((1 - xi[:, 1]) / (1 + (alpha * alpha - 1) * xi[:, 1]))
    sin_t = torch.sqrt((1 - cos_t * cos_t).clamp_min(0))
    return torch.stack([sin_t * torch.cos(phi), sin_t * torch.sin(phi), cos_t], -1)


def _cached(name: str, build) -> np.ndarray:
    path = cache_dir() / "pbr" / f"{name}.npy"
    if path.is_file():
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            pass  # damaged: rebuilt below
    arr = np.asarray(build(), np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
    return arr


def brdf_lut(size: int = 64, samples: int = 512) -> Tensor:
    """The split-sum BRDF table (size, size, 2): for n·v (columns) and roughness (rows), the scale and
    bias of F0 in ∫ GGX specular · n·l. Computed once, cached."""
    def build():
        nv = (torch.arange(size, dtype=torch.float64) + 0.5) / size
        rough = (torch.arange(size, dtype=torch.float64) + 0.5) / size
        out = torch.zeros(size, size, 2, dtype=torch.float64)
        for r, ro in enumerate(rough.tolist()):
            alpha = max(ro, MIN_ROUGHNESS) ** 2
            h = _ggx_half_vectors(samples, alpha)  # (S, 3)
            v = torch.stack([torch.sqrt(1 - nv * nv), torch.zeros_like(nv), nv], -1)  # (N, 3)
            v_dot_h = (v[:, None] * h[None]).sum(-1)
            l = 2 * v_dot_h[..., None] * h[None] - v[:, None]
            n_dot_l = l[..., 2].clamp_min(0)
            n_dot_h = h[None, :, 2].expand_as(n_dot_l)
            vis = smith_visibility(nv[:, None], n_dot_l, torch.tensor(alpha, dtype=torch.float64))
            # pdf of l = D·n·h / (4 v·h): the D cancels
            g = torch.where(n_dot_l > 0, 4 * vis * n_dot_l * v_dot_h.clamp_min(0) / n_dot_h.clamp_min(1e-8),
                            torch.zeros_like(n_dot_l))
            fc = (1 - v_dot_h.clamp(0, 1)) ** 5
            out[r, :, 0] = ((1 - fc) * g).mean(-1)
            out[r, :, 1] = (fc * g).mean(-1)
        return out.numpy()

    return torch.from_numpy(_cached(f"brdf_lut_{size}_{samples}", build))


# ------------------------------------------------------------------------------ environments
def directions_to_equirect(d: Tensor) -> Tensor:
    """Unit directions (..., 3) → equirect (u, v) in [0, 1] (v = 0 looks at +z)."""
    u = 0.5 + torch.atan2(d[..., 1], d[..., 0]) / (2 * math.pi)
    v = torch.acos(d[..., 2].clamp(-1, 1)) / math.pi
    return torch.stack([u, v], -1)


def equirect_directions(h: int, w: int, dtype=torch.float64) -> tuple[Tensor, Tensor]:
    """Texel-centre directions (h, w, 3) of an equirect map and their solid angles (h, w)."""
    theta = (torch.arange(h, dtype=dtype) + 0.5) / h * math.pi
    phi = ((torch.arange(w, dtype=dtype) + 0.5) / w - 0.5) * 2 * math.pi
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    d = torch.stack([torch.sin(t) * torch.cos(p), torch.sin(t) * torch.sin(p), torch.cos(t)], -1)
    return d, torch.sin(t) * (math.pi / h) * (2 * math.pi / w)


def sample_equirect(img: Tensor, d: Tensor) -> Tensor:
    """Bilinear lookup of img (h, w, C) along directions (..., 3), wrapping around in u."""
    uv = directions_to_equirect(d).reshape(1, -1, 1, 2).to(img.dtype)
    grid = torch.stack([uv[..., 0] * 2 - 1, uv[..., 1] * 2 - 1], -1)
    src = img.permute(2, 0, 1)[None]
    src = torch.cat([src[..., -1:], src, src[..., :1]], -1)  # a column each side: u wraps
    w = img.shape[1]
    grid = torch.stack([grid[..., 0] * w / (w + 2), grid[..., 1]], -1)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, :, 0].T.reshape(*d.shape[:-1], img.shape[-1])


SH_BAND = (math.pi, 2 * math.pi / 3, math.pi / 4)


def _sh9(d: Tensor) -> Tensor:
    x, y, z = d.unbind(-1)
    return torch.stack([0.282095 * torch.ones_like(x), 0.488603 * y, 0.488603 * z, 0.488603 * x,
                        1.092548 * x * y, 1.092548 * y * z, 0.315392 * (3 * z * z - 1), 1.092548 * x * z,
                        0.546274 * (x * x - y * y)], -1)


@dataclass
class Environment:
    """An environment's lighting: SH irradiance (9, 3), specular maps at roughness k/(K−1)
    (each (h_k, w_k, 3), halving in size) and the BRDF table."""

    sh: Tensor
    specular: list[Tensor]
    lut: Tensor

    @staticmethod
    def from_radiance(radiance: Tensor, levels: int = 6, width: int = 128, samples: int = 64) -> "Environment":
        """From an equirect radiance map (H, W, 3) linear (cached by content)."""
        rad = radiance.detach().double().cpu()
        key = hashlib.sha1(rad.float().numpy().tobytes()).hexdigest()[:16] + f"_{levels}_{width}_{samples}"

        def build():
            base = F.interpolate(rad.permute(2, 0, 1)[None], size=(width // 2, width), mode="area")[0].permute(1, 2, 0)
            d, omega = equirect_directions(*base.shape[:2])
            sh = (_sh9(d)[..., None] * base[..., None, :] * omega[..., None, None]).sum((0, 1))  # (9, 3)
            band = torch.tensor([SH_BAND[0]] + [SH_BAND[1]] * 3 + [SH_BAND[2]] * 5, dtype=torch.float64)
            maps = [base]
            for k in range(1, levels):
                rough = k / (levels - 1)
                h, w = max(4, base.shape[0] >> k), max(8, base.shape[1] >> k)
                src = F.interpolate(base.permute(2, 0, 1)[None], size=(max(4, h * 2), max(8, w * 2)),
                                    mode="area")[0].permute(1, 2, 0)
                n, _ = equirect_directions(h, w)
                hv = _ggx_half_vectors(samples, max(rough, MIN_ROUGHNESS) ** 2)  # around +z
                # a frame per texel with n as its z axis; v = n (the split sum's assumption)
                up = torch.where(n[..., 2:].abs() < 0.999, torch.tensor([0.0, 0, 1], dtype=torch.float64),
                                 torch.tensor([1.0, 0, 0], dtype=torch.float64))
                tx = F.normalize(torch.cross(up.expand_as(n), n, dim=-1), dim=-1)
                ty = torch.cross(n, tx, dim=-1)
                hw = hv[:, 0, None, None, None] * tx + hv[:, 1, None, None, None] * ty + hv[:, 2, None, None, None] * n
                l = 2 * (hw * n).sum(-1, keepdim=True) * hw - n
                wgt = (l * n).sum(-1).clamp_min(0)
                col = sample_equirect(src, F.normalize(l, dim=-1))
                maps.append((col * wgt[..., None]).sum(0) / wgt.sum(0).clamp_min(1e-8)[..., None])
            flat = [sh * band[:, None]] + maps
            return np.concatenate([m.reshape(-1).numpy() for m in flat])

        flat = torch.from_numpy(_cached(f"env_{key}", build)).double()
        shapes = [(9, 3), (width // 2, width, 3)] + [(max(4, (width // 2) >> k), max(8, width >> k), 3)
                                                     for k in range(1, levels)]
        out, at = [], 0
        for s in shapes:
            n = int(np.prod(s))
            out.append(flat[at:at + n].view(*s).float())
            at += n
        return Environment(out[0], out[1:], brdf_lut())

    def to(self, device) -> "Environment":
        return Environment(self.sh.to(device), [m.to(device) for m in self.specular], self.lut.to(device))

    def irradiance(self, n: Tensor) -> Tensor:
        """E(n) (..., 3): cosine-weighted incoming light."""
        return (_sh9(n)[..., None] * self.sh.to(n.dtype)).sum(-2).clamp_min(0)

    def prefiltered(self, r: Tensor, roughness: Tensor) -> Tensor:
        """Specular light along reflected directions r (..., 3) at roughness (..., 1), linear between levels."""
        levels = len(self.specular)
        x = roughness.clamp(0, 1) * (levels - 1)
        out = 0
        for k in range(levels):
            w = torch.clamp(1 - (x - k).abs(), min=0) if levels > 1 else torch.ones_like(x)
            if bool((w > 0).any()):
                out = out + w * sample_equirect(self.specular[k].to(r.dtype), r)
        return out

    def shade(self, base: Tensor, roughness: Tensor, metallic: Tensor, occlusion: Tensor, n: Tensor,
              v: Tensor) -> Tensor:
        """Split-sum image-based lighting of a metallic-roughness surface (..., 3) linear."""
        n_dot_v = _dot(n, v).clamp(1e-4, 1)
        r = F.normalize(2 * n_dot_v * n - v, dim=-1)
        f0 = 0.04 * (1 - metallic) + base * metallic
        size = self.lut.shape[0]
        uv = torch.cat([n_dot_v, roughness.clamp(0, 1)], -1) * 2 - 1
        ab = F.grid_sample(self.lut.permute(2, 0, 1)[None].to(n.dtype), uv.reshape(1, -1, 1, 2) * (size - 1) / size,
                           mode="bilinear", padding_mode="border", align_corners=False)[0, :, :, 0].T
        ab = ab.reshape(*n.shape[:-1], 2)
        spec = self.prefiltered(r, roughness) * (f0 * ab[..., :1] + ab[..., 1:])
        diffuse = base * (1 - metallic) * self.irradiance(n) / math.pi
        return occlusion * (diffuse + spec)


def sky(height: int = 64, width: int = 128, sun=(0.3, -0.5, 0.8), sun_radiance: float = 30.0,
        zenith=(0.25, 0.45, 0.9), horizon=(0.9, 0.9, 0.95), ground=(0.25, 0.22, 0.2)) -> Tensor:
    """A procedural sky (height, width, 3) linear: zenith-to-horizon gradient, a dim ground, a small
    bright sun — the built-in environment when the user gives none."""
    d, _ = equirect_directions(height, width)
    z = d[..., 2:]
    t = z.clamp_min(0) ** 0.5
    sky_col = torch.tensor(horizon, dtype=torch.float64) * (1 - t) + torch.tensor(zenith, dtype=torch.float64) * t
    col = torch.where(z >= 0, sky_col, torch.tensor(ground, dtype=torch.float64).expand_as(sky_col))
    s = F.normalize(torch.tensor(sun, dtype=torch.float64), dim=0)
    cos = (d * s).sum(-1, keepdim=True)
    col = col + sun_radiance * torch.exp((cos - 1) * 800.0)
    return col.float()
