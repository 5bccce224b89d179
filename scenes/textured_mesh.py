"""A triangle mesh with UVs and PBR materials, as the mesh renderer, Paint-it and the exports use it.

Conventions: positions (V, 3) float32 in the world frame; faces (F, 3) int64; one UV per vertex (a
vertex on a UV seam is duplicated, as glTF stores it), in the glTF/texture-kernel convention u right,
v down the image rows (row 0 at v = 0); textures are (H, W, C) float32 in [0, 1], base colour
sRGB-encoded as files store it, the others linear. A mesh with several materials keeps its faces grouped
by `parts` (consecutive face ranges).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor


@dataclass
class Material:
    """glTF's metallic-roughness material. `orm` packs occlusion (R), roughness (G) and metallic (B)
    as glTF's metallicRoughnessTexture does (occlusion may share it); factors multiply the maps."""

    name: str = "material"
    base_color: Tensor | None = None  # (H, W, 3 or 4) sRGB-encoded
    base_color_factor: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    orm: Tensor | None = None  # (H, W, 3) linear: occlusion, roughness, metallic
    roughness: float = 1.0
    metallic: float = 0.0
    normal: Tensor | None = None  # (H, W, 3) tangent-space normal map, [0, 1] encoded
    has_occlusion: bool = False  # whether orm's R channel is a real occlusion map

    def maps(self) -> dict[str, Tensor]:
        return {k: v for k, v in (("base_color", self.base_color), ("orm", self.orm), ("normal", self.normal))
                if v is not None}


@dataclass
class Part:
    start: int  # first face
    count: int
    material: Material


@dataclass
class TexturedMesh:
    vertices: Tensor  # (V, 3) float32
    faces: Tensor  # (F, 3) int64
    uvs: Tensor | None = None  # (V, 2) float32
    normals: Tensor | None = None  # (V, 3) float32
    colors: Tensor | None = None  # (V, 3) float32 sRGB, when there is no texture
    parts: list[Part] = field(default_factory=list)

    def __post_init__(self):
        V = len(self.vertices)
        if self.vertices.dim() != 2 or self.vertices.shape[1] != 3:
            raise ValueError(f"vertices must be (V, 3), got {tuple(self.vertices.shape)}")
        if self.faces.dim() != 2 or self.faces.shape[1] != 3:
            raise ValueError(f"faces must be (F, 3), got {tuple(self.faces.shape)}")
        if len(self.faces) and (int(self.faces.min()) < 0 or int(self.faces.max()) >= V):
            raise ValueError("faces index vertices the mesh does not have")
        for name in ("uvs", "normals", "colors"):
            t = getattr(self, name)
            if t is not None and len(t) != V:
                raise ValueError(f"{name} must have one row per vertex ({V}), got {len(t)}")
        if not self.parts:
            self.parts = [Part(0, len(self.faces), Material())]
        if sum(p.count for p in self.parts) != len(self.faces):
            raise ValueError("parts must cover the faces exactly")

    @property
    def textured(self) -> bool:
        return self.uvs is not None and any(p.material.base_color is not None for p in self.parts)

    def face_part(self) -> Tensor:
        """(F,) index of each face's part."""
        return torch.repeat_interleave(torch.arange(len(self.parts)), torch.tensor([p.count for p in self.parts]))

    def vertex_normals(self) -> Tensor:
        """Area-weighted vertex normals over welded positions, so seams do not show as creases."""
        if self.normals is not None:
            return self.normals
        weld = weld_map(self.vertices)
        f = weld[self.faces]
        v = self.vertices.double()
        n = torch.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=1)
        acc = torch.zeros_like(v).index_add_(0, f.reshape(-1), n.repeat_interleave(3, 0))[weld]
        return torch.nn.functional.normalize(acc, dim=1).float()

    def with_material(self, material: Material) -> "TexturedMesh":
        return replace(self, parts=[Part(0, len(self.faces), material)])


def weld_map(vertices: Tensor) -> Tensor:
    """(V,) index of the first vertex at the same position (seams split positions, not surfaces)."""
    _, inverse = torch.unique(vertices, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1 if len(inverse) else 0,), len(vertices), dtype=torch.long)
    first = first.scatter_reduce(0, inverse, torch.arange(len(vertices)), reduce="amin")
    return first[inverse]


def welded_faces(vertices: Tensor, faces: Tensor) -> Tensor:
    """Faces over welded positions: the topology antialiasing and normals need across UV seams."""
    return weld_map(vertices)[faces]


def unwrap(mesh: TexturedMesh) -> TexturedMesh:
    """UVs by xatlas for a mesh without them: vertices are split along the new seams (colours and
    normals follow), faces keep their order and parts."""
    import xatlas

    v = mesh.vertices.numpy().astype(np.float32)
    f = mesh.faces.numpy().astype(np.uint32)
    vmap, idx, uv = xatlas.parametrize(v, f)
    vmap = torch.as_tensor(vmap.astype(np.int64))
    pick = lambda t: None if t is None else t[vmap]  # noqa: E731
    uv = torch.as_tensor(uv, dtype=torch.float32)
    uv[:, 1] = 1 - uv[:, 1]  # xatlas puts v up; ours runs down the rows
    return replace(mesh, vertices=mesh.vertices[vmap], faces=torch.as_tensor(idx.astype(np.int64)), uvs=uv,
                   normals=pick(mesh.normals), colors=pick(mesh.colors))


def uv_overlap(mesh: TexturedMesh, size: int = 512) -> tuple[float, float]:
    """(fraction of the UV square covered, fraction of covered texels that two faces cover), from
    rasterizing the UV layout twice with the faces' depth order reversed: a texel covered twice has
    different nearest faces. Coverage is exact, so shared chart edges do not count."""
    from kernels.mesh import rasterize

    if mesh.uvs is None or not len(mesh.faces):
        return 0.0, 0.0
    F = len(mesh.faces)
    corners = mesh.uvs.double()[mesh.faces.reshape(-1)]
    depth = (torch.arange(F, dtype=torch.float64) + 0.5) / F * 1.8 - 0.9
    ids = []
    for d in (depth, -depth):
        pos = torch.cat([corners * 2 - 1, d.repeat_interleave(3)[:, None], torch.ones(3 * F, 1, dtype=torch.float64)], 1)
        ids.append(rasterize(pos, torch.arange(3 * F).view(F, 3), (size, size))[0][0, ..., 3])
    drawn = ids[0] > 0
    twice = (ids[0] != ids[1]) & drawn
    return float(drawn.double().mean()), float(twice.sum() / drawn.sum().clamp(min=1))
