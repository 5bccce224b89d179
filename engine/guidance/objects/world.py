"""The object world: objects composed from primitives, each in one colour and one surface pattern,
rendered from random views with captions such as "a red striped mushroom, front view".

It is small enough for a diffusion model to learn on a CPU, and every render's answer is known,
so text-to-3D can be measured in it (a judge names kind, colour and pattern). Objects stand at the
origin, z up, within a radius of 0.8, their front (where they have one) towards +x: azimuth 0
looks at the front, as `engine.guidance.prompts` has it. Patterns are solid textures of the
object-space position (stripes across z, a 3D checkerboard, a lattice of dots), so they need no
UVs and wrap every part alike. The renders are ours (`kernels.mesh`, 2×2 supersampled), Lambertian
under a random key light and ambient, over a plain grey.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from engine.cameras import Cameras, sample_orbit_cameras
from engine.guidance.prompts import ViewThresholds, view_directions

KINDS = ("sphere", "cube", "cylinder", "cone", "torus", "pyramid", "mushroom", "snowman", "table", "chair", "tree",
         "house")
FRONTED = ("snowman", "chair", "house")  # a nose, a backrest, a door: their captions name the view
COLOURS = {"red": (0.82, 0.10, 0.08), "orange": (0.96, 0.48, 0.05), "yellow": (0.96, 0.86, 0.12),
           "green": (0.16, 0.62, 0.16), "blue": (0.10, 0.26, 0.86), "purple": (0.50, 0.16, 0.70),
           "pink": (0.98, 0.56, 0.72), "brown": (0.46, 0.28, 0.12), "white": (0.95, 0.95, 0.95),
           "black": (0.07, 0.07, 0.07)}
PATTERNS = ("plain", "striped", "checkered", "dotted")
SECOND = (0.93, 0.92, 0.86)  # the pattern's other colour: cream, or grey on white objects
SECOND_ON_WHITE = (0.45, 0.45, 0.47)
DETAIL = (0.16, 0.16, 0.18)  # doors and noses: dark, or light grey on black objects
DETAIL_ON_BLACK = (0.70, 0.70, 0.70)
BACKGROUND = (0.55, 0.75)  # a plain grey in this range
VIEW = {"radius": (2.5, 3.0), "elevation": (-20.0, 70.0), "fov": (45.0, 53.0)}  # about `lumen3d generate`'s
STRIPE, CHECKER, DOT_SPACING, DOT_RADIUS = 0.30, 0.25, 0.30, 0.09  # object units


@dataclass(frozen=True)
class Item:
    """One object of the world."""

    kind: str
    colour: str
    pattern: str

    def caption(self, direction: str | None = None, plain_word: bool = False) -> str:
        """"a red striped mushroom" ("an orange cube"; "a plain …" with plain_word), and ", front view"
        for objects with a front when a direction is given."""
        words = [self.colour] + ([self.pattern] if self.pattern != "plain" or plain_word else []) + [self.kind]
        text = ("an " if words[0][0] in "aeiou" else "a ") + " ".join(words)
        return f"{text}, {direction} view" if direction is not None and self.kind in FRONTED else text

    @property
    def index(self) -> tuple[int, int, int]:
        return KINDS.index(self.kind), list(COLOURS).index(self.colour), PATTERNS.index(self.pattern)

    @staticmethod
    def from_index(kind: int, colour: int, pattern: int) -> "Item":
        return Item(KINDS[kind], list(COLOURS)[colour], PATTERNS[pattern])


def all_items() -> list[Item]:
    return [Item(k, c, p) for k in KINDS for c in COLOURS for p in PATTERNS]


def held_out_items(count: int = 48, seed: int = 0) -> list[Item]:
    """Combinations kept out of training (composition is tested on them): every kind, colour and
    pattern still appears in training many times, only these triples do not."""
    rng = np.random.default_rng(seed)
    items = all_items()
    return [items[i] for i in sorted(rng.choice(len(items), count, replace=False))]


def training_items(held_out: int = 48, seed: int = 0) -> list[Item]:
    held = set(held_out_items(held_out, seed))
    return [i for i in all_items() if i not in held]


# ---------------------------------------------------------------------- geometry
def _box(lo, hi):
    import trimesh

    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return trimesh.creation.box(extents=hi - lo, transform=_translation((lo + hi) / 2))


def _translation(t):
    m = np.eye(4)
    m[:3, 3] = t
    return m


def _cylinder(r, z0, z1, x=0.0, y=0.0, sections=32):
    import trimesh

    return trimesh.creation.cylinder(radius=r, height=z1 - z0, sections=sections,
                                     transform=_translation((x, y, (z0 + z1) / 2)))


def _cone(r, z0, z1, sections=32):
    import trimesh

    return trimesh.creation.cone(radius=r, height=z1 - z0, sections=sections, transform=_translation((0, 0, z0)))


def _ellipsoid(centre, radii, subdivisions=3):
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=subdivisions)
    s.vertices = s.vertices * np.asarray(radii) + np.asarray(centre)
    return s


def _pyramid(half, z0, z1):
    import trimesh

    v = [[-half, -half, z0], [half, -half, z0], [half, half, z0], [-half, half, z0], [0, 0, z1]]
    f = [[0, 2, 1], [0, 3, 2], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]]
    return trimesh.Trimesh(v, f, process=False)


def _prism_roof(x, y, z0, z1):
    """A gable roof over [−x, x] × [−y, y], its ridge along y."""
    import trimesh

    v = [[-x, -y, z0], [x, -y, z0], [0, -y, z1], [-x, y, z0], [x, y, z0], [0, y, z1]]
    f = [[0, 1, 2], [3, 5, 4], [0, 3, 4], [0, 4, 1], [1, 4, 5], [1, 5, 2], [0, 2, 5], [0, 5, 3]]
    return trimesh.Trimesh(v, f, process=False)


def _parts(kind: str) -> list[tuple[object, bool, bool]]:
    """(trimesh, smooth shading, detail) for each part of a kind."""
    import trimesh

    if kind == "sphere":
        return [(_ellipsoid((0, 0, 0), (0.7, 0.7, 0.7)), True, False)]
    if kind == "cube":
        return [(_box((-0.52, -0.52, -0.52), (0.52, 0.52, 0.52)), False, False)]
    if kind == "cylinder":
        return [(_cylinder(0.45, -0.6, 0.6), False, False)]
    if kind == "cone":
        return [(_cone(0.55, -0.6, 0.7), False, False)]
    if kind == "torus":
        t = trimesh.creation.torus(major_radius=0.5, minor_radius=0.2, major_sections=48, minor_sections=16)
        t.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 2, (1, 0, 0)))  # standing, a ring
        return [(t, True, False)]
    if kind == "pyramid":
        return [(_pyramid(0.55, -0.5, 0.65), False, False)]
    if kind == "mushroom":
        return [(_cylinder(0.17, -0.65, 0.1), False, False), (_ellipsoid((0, 0, 0.12), (0.62, 0.62, 0.32)), True, False)]
    if kind == "snowman":
        nose = trimesh.creation.cone(radius=0.05, height=0.2, sections=16)
        nose.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 2, (0, 1, 0)))
        nose.apply_translation((0.17, 0, 0.6))
        return [(_ellipsoid((0, 0, -0.38), (0.4, 0.4, 0.4)), True, False),
                (_ellipsoid((0, 0, 0.2), (0.28, 0.28, 0.28)), True, False),
                (_ellipsoid((0, 0, 0.6), (0.19, 0.19, 0.19)), True, False), (nose, False, True)]
    if kind == "table":
        legs = [(_cylinder(0.05, -0.55, 0.18, x, y, 12), False, False) for x in (-0.55, 0.55) for y in (-0.35, 0.35)]
        return [(_box((-0.65, -0.45, 0.18), (0.65, 0.45, 0.26)), False, False)] + legs
    if kind == "chair":
        legs = [(_cylinder(0.04, -0.65, -0.1, x, y, 12), False, False) for x in (-0.3, 0.3) for y in (-0.3, 0.3)]
        return [(_box((-0.36, -0.36, -0.1), (0.36, 0.36, -0.02)), False, False),
                (_box((-0.36, -0.36, -0.02), (-0.28, 0.36, 0.7)), False, False)] + legs
    if kind == "tree":
        return [(_cylinder(0.1, -0.7, -0.25, sections=16), False, False), (_cone(0.52, -0.3, 0.35), False, False),
                (_cone(0.38, 0.05, 0.75), False, False)]
    if kind == "house":
        return [(_box((-0.45, -0.5, -0.6), (0.45, 0.5, 0.1)), False, False),
                (_prism_roof(0.55, 0.58, 0.1, 0.62), False, False),
                (_box((0.45, -0.13, -0.6), (0.48, 0.13, -0.15)), False, True)]
    raise KeyError(kind)


@dataclass
class KindMesh:
    vertices: Tensor  # (V, 3)
    faces: Tensor  # (F, 3) int32
    normals: Tensor  # (V, 3)
    detail: Tensor  # (V,) 1 on detail parts (doors, noses)


@lru_cache(maxsize=None)
def kind_mesh(kind: str) -> KindMesh:
    """One mesh per kind: flat-shaded parts have their vertices split per face."""
    vs, fs, ns, ds = [], [], [], []
    offset = 0
    for mesh, smooth, detail in _parts(kind):
        if not smooth:
            mesh = mesh.copy()
            mesh.unmerge_vertices()
        v = np.asarray(mesh.vertices, np.float32)
        vs.append(v)
        fs.append(np.asarray(mesh.faces, np.int64) + offset)
        ns.append(np.asarray(mesh.vertex_normals, np.float32))
        ds.append(np.full(len(v), float(detail), np.float32))
        offset += len(v)
    cat = lambda xs: torch.from_numpy(np.concatenate(xs))  # noqa: E731
    return KindMesh(cat(vs), cat(fs).int(), cat(ns), cat(ds))


# ---------------------------------------------------------------------- appearance
def pattern_mask(pattern: Tensor, p: Tensor) -> Tensor:
    """1 where the pattern shows its second colour. pattern (B,) index into PATTERNS, p (B, H, W, 3)
    object-space points → (B, H, W)."""
    stripes = (torch.floor(p[..., 2] / (STRIPE / 2)) % 2)
    checks = (torch.floor(p / CHECKER).sum(-1) % 2)
    nearest = torch.round(p / DOT_SPACING) * DOT_SPACING
    dots = ((p - nearest).norm(dim=-1) < DOT_RADIUS).float()
    out = torch.zeros_like(stripes)
    for k, m in ((1, stripes), (2, checks), (3, dots)):
        out = torch.where((pattern == k)[:, None, None], m, out)
    return out


def albedo(items: list[Item], p: Tensor, detail: Tensor) -> Tensor:
    """(B, H, W, 3) colours of the items at object-space points p (B, H, W, 3); detail (B, H, W)."""
    c = torch.tensor([COLOURS[i.colour] for i in items])[:, None, None]
    second = torch.tensor([SECOND_ON_WHITE if i.colour == "white" else SECOND for i in items])[:, None, None]
    dark = torch.tensor([DETAIL_ON_BLACK if i.colour == "black" else DETAIL for i in items])[:, None, None]
    m = pattern_mask(torch.tensor([PATTERNS.index(i.pattern) for i in items]), p)[..., None]
    out = c * (1 - m) + second * m
    return torch.where(detail[..., None] > 0.5, dark, out)


@dataclass
class Shot:
    """Renders of items and what they show: images (B, 3, H, W) in [0, 1], and per image the
    camera's azimuth and elevation (degrees) and view direction."""

    images: Tensor
    items: list[Item]
    azimuth: Tensor
    elevation: Tensor
    directions: list[str]

    def captions(self, generator: torch.Generator) -> list[str]:
        """Captions as a user would write them: "plain" is said half the time."""
        say = torch.rand(len(self.items), generator=generator).lt(0.5).tolist()
        return [i.caption(d, plain_word=p) for i, d, p in zip(self.items, self.directions, say)]


def render_items(items: list[Item], cameras: Cameras, generator: torch.Generator, size: int = 64,
                 supersample: int = 2, jitter: float = 0.1) -> Tensor:
    """(B, 3, size, size) renders of items (one kind per call) from cameras: each instance scaled by
    1 ± jitter per axis, lit by a random key light and ambient, over a random plain grey."""
    from kernels import mesh as ops

    kinds = {i.kind for i in items}
    if len(kinds) != 1:
        raise ValueError("render_items draws one kind per call")
    km = kind_mesh(kinds.pop())
    B = len(items)
    s = size * supersample
    cams = cameras.scaled(s / cameras.size[0]) if cameras.size[0] != s else cameras
    u = torch.rand(B, 9, generator=generator)
    scale = 1 + jitter * (2 * u[:, :3] - 1)
    verts = km.vertices[None] * scale[:, None, :]  # (B, V, 3)
    normals = F.normalize(km.normals[None] / scale[:, None, :], dim=-1)
    from engine.rendering.mesh import projection

    mvp = projection(cams, 0.05, 20.0).float()
    clip = torch.einsum("bij,bvj->bvi", mvp, torch.cat([verts, torch.ones_like(verts[..., :1])], -1)).contiguous()
    rast, _ = ops.rasterize(clip, km.faces, (s, s))
    hit = (rast[..., 3] > 0).float()
    attrs = torch.cat([km.vertices[None].expand(B, -1, -1), normals, km.detail[None, :, None].expand(B, -1, 1)], -1)
    px, _ = ops.interpolate(attrs.contiguous(), rast, km.faces)
    p, n, detail = px[..., :3], F.normalize(px[..., 3:6], dim=-1), px[..., 6]
    # the key light comes from the camera's side of the object, above the horizon more often than not
    eye = F.normalize(cams.c2w[:, :3, 3].float(), dim=-1)
    az = 2 * math.pi * u[:, 3]
    rand_dir = torch.stack([torch.cos(az), torch.sin(az), 2 * u[:, 4] - 0.5], -1)
    light = F.normalize(eye + 1.2 * F.normalize(rand_dir, dim=-1), dim=-1)
    ambient = 0.35 + 0.2 * u[:, 5]
    key = (1 - ambient) * (0.85 + 0.3 * u[:, 6])
    lambert = (n * light[:, None, None, :]).sum(-1).clamp_min(0)
    shade = (ambient[:, None, None] + key[:, None, None] * lambert)[..., None]
    rgb = (albedo(items, p, detail) * shade).clamp(0, 1)
    bg = BACKGROUND[0] + (BACKGROUND[1] - BACKGROUND[0]) * u[:, 7]
    img = hit[..., None] * rgb + (1 - hit[..., None]) * bg[:, None, None, None]
    img = img.permute(0, 3, 1, 2)
    return F.avg_pool2d(img, supersample) if supersample > 1 else img


def random_views(n: int, generator: torch.Generator, size: int = 64) -> tuple[Cameras, Tensor, Tensor]:
    cams, azim, elev = sample_orbit_cameras(n, size, size, generator, radius=VIEW["radius"],
                                            elevation_deg=VIEW["elevation"], fov_deg=VIEW["fov"])
    return cams, azim, elev


def shoot(items: list[Item], generator: torch.Generator, size: int = 64, batch: int = 64) -> Shot:
    """Render each item once from a random view (grouped by kind, in the items' order)."""
    out = torch.empty(len(items), 3, size, size)
    azim, elev = torch.empty(len(items)), torch.empty(len(items))
    order = sorted(range(len(items)), key=lambda i: KINDS.index(items[i].kind))
    for kind in dict.fromkeys(items[i].kind for i in order):
        idx = [i for i in order if items[i].kind == kind]
        for j in range(0, len(idx), batch):
            part = idx[j:j + batch]
            cams, a, e = random_views(len(part), generator, size)
            out[part] = render_items([items[i] for i in part], cams, generator, size)
            azim[part], elev[part] = a, e
    return Shot(out, items, azim, elev, view_directions(azim, elev, ViewThresholds()))
