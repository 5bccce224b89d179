"""Textured meshes as files: read OBJ (+MTL and its maps), PLY, GLB/glTF; write OBJ+MTL with PBR maps
and GLB with a pbrMetallicRoughness material.

GLB/glTF/PLY are read through trimesh (multi-node GLBs come out with their node transforms applied,
several materials as several parts). OBJ is read here, in file order and with the MTL's PBR keys, which
trimesh ignores (it also renames and reorders materials); its exporter drops PBR maps, so the MTL is
written here too, with the keys of the common PBR extension to MTL (Pr/Pm and map_Pr/map_Pm reading the
packed occlusion-roughness-metallic image's channels with -imfchan, norm for the normal map). Files are written atomically: a folder's files are complete or absent.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from engine.errors import InputError
from engine.io import write_png
from scenes.textured_mesh import Material, Part, TexturedMesh

READABLE = (".obj", ".glb", ".gltf", ".ply")


def _image(img) -> torch.Tensor | None:
    """A PIL image (or array) → (H, W, C) float32 in [0, 1]; grey images get three channels."""
    if img is None:
        return None
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = np.asarray(img.convert("RGBA") if hasattr(img, "convert") else a)
    a = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 or a.max() > 1 else 1.0)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, -1)
    if a.shape[-1] == 2:  # grey + alpha
        a = np.concatenate([np.repeat(a[..., :1], 3, -1), a[..., 1:]], -1)
    return torch.from_numpy(np.ascontiguousarray(a))


def _factor(x, n: int, default: float):
    if x is None:
        return (default,) * n if n > 1 else default
    a = np.asarray(x, np.float64).reshape(-1)
    if a.dtype.kind in "ui" or a.max() > 1.0 + 1e-6:
        a = a / 255.0
    return tuple(float(v) for v in a[:n]) if n > 1 else float(a[0])


def _material(visual, name: str) -> Material:
    import trimesh

    mat = getattr(visual, "material", None)
    if mat is None:
        return Material(name=name)
    if isinstance(mat, trimesh.visual.material.SimpleMaterial):
        mat = mat.to_pbr()
    base = _image(getattr(mat, "baseColorTexture", None))
    factor = _factor(getattr(mat, "baseColorFactor", None), 4, 1.0)
    mr = _image(getattr(mat, "metallicRoughnessTexture", None))
    occ = _image(getattr(mat, "occlusionTexture", None))
    orm = None
    if mr is not None or occ is not None:
        ref = mr if mr is not None else occ
        orm = torch.ones(*ref.shape[:2], 3)
        if mr is not None:
            orm[..., 1:] = mr[..., 1:3]
        if occ is not None and occ.shape[:2] == orm.shape[:2]:
            orm[..., 0] = occ[..., 0]
    normal = _image(getattr(mat, "normalTexture", None))
    return Material(name=getattr(mat, "name", None) or name, base_color=None if base is None else base[..., :3],
                    base_color_factor=factor, orm=orm, normal=None if normal is None else normal[..., :3],
                    roughness=_factor(getattr(mat, "roughnessFactor", None), 1, 1.0),
                    metallic=_factor(getattr(mat, "metallicFactor", None), 1, 0.0 if mr is None else 1.0),
                    has_occlusion=occ is not None)


_MAP_OPTIONS = {"-blendu": 1, "-blendv": 1, "-bm": 1, "-boost": 1, "-cc": 1, "-clamp": 1, "-imfchan": 1, "-mm": 2,
                "-o": 3, "-s": 3, "-t": 3, "-texres": 1, "-type": 1}


def _map_file(arg: str) -> str:
    """The file name of an MTL map statement after its options (names may contain spaces)."""
    w = arg.split()
    i = 0
    while i < len(w) and w[i] in _MAP_OPTIONS:
        n = _MAP_OPTIONS[w[i]]
        i += 1
        while n and i < len(w) - 1:  # -o/-s/-t take up to three numbers
            try:
                float(w[i])
            except ValueError:
                if w[i - 1] not in ("-imfchan", "-clamp", "-blendu", "-blendv", "-type", "-cc"):
                    break
            i += 1
            n -= 1
    return " ".join(w[i:])


def _read_mtl(path: Path) -> dict[str, Material]:
    """An MTL file's materials: Kd and d as the base-colour factor, map_Kd, the PBR extension's Pr, Pm
    and map_Pr/map_Pm (the packed occlusion-roughness-metallic image), norm (or map_Bump) as the normal
    map. A missing map is skipped, as viewers do."""
    from PIL import Image

    mats: dict[str, Material] = {}
    cur = None

    def image(arg: str):
        f = path.parent / _map_file(arg)
        return _image(Image.open(f).convert("RGB")) if f.is_file() else None

    for line in path.read_text(errors="replace").splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) < 2 or parts[0].startswith("#"):
            continue
        key, arg = parts
        if key == "newmtl":
            cur = mats.setdefault(arg, Material(name=arg))
            continue
        if cur is None:
            continue
        try:
            if key == "Kd":
                cur.base_color_factor = (*[float(x) for x in arg.split()[:3]], cur.base_color_factor[3])
            elif key == "d":
                cur.base_color_factor = (*cur.base_color_factor[:3], float(arg.split()[0]))
            elif key == "map_Kd":
                cur.base_color = image(arg)
            elif key == "Pr":
                cur.roughness = float(arg.split()[0])
            elif key == "Pm":
                cur.metallic = float(arg.split()[0])
            elif key in ("map_Pr", "map_Pm") and cur.orm is None:
                cur.orm = image(arg)
            elif key == "map_Ka" and "-imfchan r" in arg:
                cur.has_occlusion = True
            elif key in ("norm", "map_Bump", "bump") and cur.normal is None:
                cur.normal = image(arg)
        except (ValueError, OSError):
            raise InputError(path, f"bad line {line.strip()[:60]!r}") from None
    return mats


def _index(tok: str, n: int) -> int:
    i = int(tok)
    return i - 1 if i > 0 else n + i


def read_obj(path: Path) -> TexturedMesh:
    """An OBJ with its MTL: polygons fanned into triangles, faces in file order grouped into parts by
    `usemtl` (a material used twice is one part), a vertex per distinct (position, uv, normal)."""
    pos, tex, nrm, col = [], [], [], []
    corners: dict[tuple, int] = {}
    out_v, out_t, out_n, out_c = [], [], [], []
    faces: dict[str, list] = {}
    mats: dict[str, Material] = {}
    current = ""
    try:
        for raw in path.read_text(errors="replace").splitlines():
            w = raw.split()
            if not w:
                continue
            if w[0] == "v":
                pos.append([float(x) for x in w[1:4]])
                if len(w) >= 7:
                    col.append([float(x) for x in w[4:7]])
            elif w[0] == "vt":
                tex.append([float(w[1]), float(w[2]) if len(w) > 2 else 0.0])
            elif w[0] == "vn":
                nrm.append([float(x) for x in w[1:4]])
            elif w[0] == "usemtl":
                current = " ".join(w[1:])
            elif w[0] == "mtllib":
                lib = path.parent / " ".join(w[1:])
                if lib.is_file():
                    mats.update(_read_mtl(lib))
            elif w[0] == "f":
                ids = []
                for c in w[1:]:
                    p = c.split("/")
                    key = (_index(p[0], len(pos)), _index(p[1], len(tex)) if len(p) > 1 and p[1] else -1,
                           _index(p[2], len(nrm)) if len(p) > 2 and p[2] else -1)
                    if not (0 <= key[0] < len(pos)) or key[1] >= len(tex) or key[2] >= len(nrm):
                        raise IndexError(c)
                    if key not in corners:
                        corners[key] = len(out_v)
                        out_v.append(key[0])
                        out_t.append(key[1])
                        out_n.append(key[2])
                    ids.append(corners[key])
                faces.setdefault(current, []).extend([ids[0], ids[k], ids[k + 1]] for k in range(1, len(ids) - 1))
    except (ValueError, IndexError) as e:
        raise InputError(path, f"not a readable OBJ (bad vertex or index {str(e)[:40]})") from None
    all_faces = [f for group in faces.values() for f in group]
    if not all_faces:
        raise InputError(path, "has no triangles")
    v = torch.tensor(pos, dtype=torch.float32)[torch.tensor(out_v)]
    if not torch.isfinite(v).all():
        raise InputError(path, "has non-finite vertex positions")
    uvs = None
    if tex and all(t >= 0 for t in out_t):
        uvs = torch.tensor(tex, dtype=torch.float32)[torch.tensor(out_t)]
        uvs[:, 1] = 1 - uvs[:, 1]  # OBJ's v points up the image; ours runs down the rows
    normals = None
    if nrm and all(n >= 0 for n in out_n):
        normals = torch.nn.functional.normalize(torch.tensor(nrm, dtype=torch.float32)[torch.tensor(out_n)], dim=1)
    colors = torch.tensor(col, dtype=torch.float32)[torch.tensor(out_v)] if len(col) == len(pos) else None
    parts, start = [], 0
    for name, group in faces.items():
        parts.append(Part(start, len(group), mats.get(name, Material(name=name or "material"))))
        start += len(group)
    return TexturedMesh(v, torch.tensor(all_faces, dtype=torch.int64), uvs, normals, colors, parts)


def read_textured_mesh(path) -> TexturedMesh:
    """A mesh file → TexturedMesh (all nodes, transforms applied; one part per material)."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such mesh file")
    if path.suffix.lower() not in READABLE:
        raise InputError(path, f"cannot read {path.suffix or 'files without a suffix'} meshes (OBJ, GLB, glTF, PLY)")
    if path.suffix.lower() == ".obj":
        return read_obj(path)
    try:
        scene = trimesh.load(str(path), force="scene", process=False)
        nodes = [scene.graph[n] for n in scene.graph.nodes_geometry]
    except Exception as e:  # trimesh raises many kinds on damaged files
        raise InputError(path, f"not a readable mesh ({type(e).__name__}: {str(e)[:120]})") from None
    nodes = [(T, scene.geometry[name]) for T, name in nodes
             if isinstance(scene.geometry.get(name), trimesh.Trimesh) and len(scene.geometry[name].faces)]
    if not nodes:
        raise InputError(path, "has no triangles")
    verts, faces, uvs, colors, normals, parts = [], [], [], [], [], []
    any_uv = any(getattr(g.visual, "uv", None) is not None for _, g in nodes)
    offset = 0
    for k, (T, g) in enumerate(nodes):
        v = np.asarray(g.vertices, np.float64) @ T[:3, :3].T + T[:3, 3]
        f = np.asarray(g.faces, np.int64)
        if np.linalg.det(T[:3, :3]) < 0:
            f = f[:, ::-1]  # a mirroring node transform flips the winding
        if not np.isfinite(v).all():
            raise InputError(path, "has non-finite vertex positions")
        # normals only where the file has them (trimesh would compute them on access)
        n = np.asarray(g.vertex_normals) @ np.linalg.inv(T[:3, :3]) if "vertex_normals" in g._cache else None
        normals.append(None if n is None else n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12))
        uv = getattr(g.visual, "uv", None)
        if any_uv:
            uv = np.zeros((len(v), 2), np.float32) if uv is None else np.asarray(uv, np.float32).copy()
            uv[:, 1] = 1 - uv[:, 1]  # trimesh's v points up the image; ours runs down the rows
            uvs.append(uv)
        vc = getattr(g.visual, "vertex_colors", None) if g.visual.kind == "vertex" else None
        colors.append(None if vc is None else np.asarray(vc, np.float32)[:, :3] / 255.0)
        mat = _material(g.visual, f"material_{k}") if g.visual.kind == "texture" else Material(name=f"material_{k}")
        verts.append(v.astype(np.float32))
        faces.append(f + offset)
        parts.append(Part(sum(len(x) for x in faces[:-1]), len(f), mat))
        offset += len(v)
    nrm = None
    if all(n is not None for n in normals):
        nrm = torch.from_numpy(np.concatenate(normals).astype(np.float32))
    col = None
    if any(c is not None for c in colors):
        col = torch.from_numpy(np.concatenate([c if c is not None else np.ones((len(v), 3), np.float32)
                                               for c, v in zip(colors, verts)]))
    return TexturedMesh(torch.from_numpy(np.concatenate(verts)), torch.from_numpy(np.concatenate(faces)),
                        torch.from_numpy(np.concatenate(uvs)) if any_uv else None, nrm, col, parts)


def _u8(t: torch.Tensor) -> np.ndarray:
    return (t.detach().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


class _AtomicFolder:
    """Write several files into a temporary folder beside `target`'s folder, then move them in."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder))

    def commit(self, names: list[str]) -> None:
        for n in names:
            os.replace(self.tmp / n, self.folder / n)
        self.tmp.rmdir()

    def abort(self) -> None:
        for f in self.tmp.iterdir():
            f.unlink()
        self.tmp.rmdir()


def write_obj(mesh: TexturedMesh, path) -> list[Path]:
    """OBJ + MTL + PNG maps (base colour, packed occlusion-roughness-metallic, normal) per material.
    Returns the files written."""
    path = Path(path)
    stem = path.stem
    out = _AtomicFolder(path.parent)
    names = []
    try:
        lines = [f"mtllib {stem}.mtl"]
        v = mesh.vertices.detach().cpu().numpy()
        lines += [f"v {a:.7g} {b:.7g} {c:.7g}" + ("" if mesh.colors is None else " {:.5g} {:.5g} {:.5g}".format(*col))
                  for (a, b, c), col in zip(v, mesh.colors.numpy() if mesh.colors is not None else [None] * len(v))]
        if mesh.uvs is not None:
            lines += [f"vt {u:.7g} {1 - w:.7g}" for u, w in mesh.uvs.detach().cpu().numpy()]
        normals = mesh.normals
        if normals is not None:
            lines += ["vn {:.6g} {:.6g} {:.6g}".format(*n) for n in normals.detach().cpu().numpy()]
        mtl = []
        f = mesh.faces.numpy() + 1
        for k, part in enumerate(mesh.parts):
            m = part.material
            name = re.sub(r"\s+", "_", m.name or f"material_{k}") or f"material_{k}"
            name = f"{name}_{k}" if any(re.sub(r"\s+", "_", p.material.name) == name for p in mesh.parts[:k]) else name
            lines.append(f"usemtl {name}")
            for a, b, c in f[part.start:part.start + part.count]:
                if mesh.uvs is not None and normals is not None:
                    lines.append(f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}")
                elif mesh.uvs is not None:
                    lines.append(f"f {a}/{a} {b}/{b} {c}/{c}")
                elif normals is not None:
                    lines.append(f"f {a}//{a} {b}//{b} {c}//{c}")
                else:
                    lines.append(f"f {a} {b} {c}")
            kd = m.base_color_factor
            mtl += [f"newmtl {name}", "Ka 1 1 1", f"Kd {kd[0]:.6g} {kd[1]:.6g} {kd[2]:.6g}", "Ks 0 0 0",
                    f"d {kd[3]:.6g}", "illum 2", f"Pr {m.roughness:.6g}", f"Pm {m.metallic:.6g}"]
            if m.base_color is not None:
                names.append(f"{stem}_{k}_basecolor.png")
                write_png(_u8(m.base_color[..., :3]), out.tmp / names[-1])
                mtl.append(f"map_Kd {names[-1]}")
            if m.orm is not None:
                names.append(f"{stem}_{k}_orm.png")
                write_png(_u8(m.orm), out.tmp / names[-1])
                mtl += [f"map_Pr -imfchan g {names[-1]}", f"map_Pm -imfchan b {names[-1]}"]
                if m.has_occlusion:
                    mtl.append(f"map_Ka -imfchan r {names[-1]}")
            if m.normal is not None:
                names.append(f"{stem}_{k}_normal.png")
                write_png(_u8(m.normal), out.tmp / names[-1])
                mtl.append(f"norm {names[-1]}")
            mtl.append("")
        (out.tmp / f"{stem}.mtl").write_text("\n".join(mtl) + "\n")
        (out.tmp / path.name).write_text("\n".join(lines) + "\n")
        names += [f"{stem}.mtl", path.name]
        out.commit(names)
    except BaseException:
        out.abort()
        raise
    return [path.parent / n for n in names]


def to_trimesh_scene(mesh: TexturedMesh):
    """A trimesh Scene with one geometry per part and glTF PBR materials."""
    import trimesh
    from PIL import Image

    scene = trimesh.Scene()
    normals = mesh.vertex_normals() if len(mesh.faces) else None
    for k, part in enumerate(mesh.parts):
        faces = mesh.faces[part.start:part.start + part.count]
        used, local = torch.unique(faces, return_inverse=True)
        m = part.material
        kwargs = {}
        if mesh.uvs is not None:
            uv = mesh.uvs[used].numpy().copy()
            uv[:, 1] = 1 - uv[:, 1]
            img = lambda t: None if t is None else Image.fromarray(_u8(t))  # noqa: E731
            occ = m.orm if m.has_occlusion else None
            mat = trimesh.visual.material.PBRMaterial(
                name=m.name, baseColorTexture=img(None if m.base_color is None else m.base_color[..., :3]),
                baseColorFactor=[float(x) for x in m.base_color_factor], metallicFactor=float(m.metallic),
                roughnessFactor=float(m.roughness), metallicRoughnessTexture=img(m.orm), normalTexture=img(m.normal),
                occlusionTexture=img(occ))
            kwargs["visual"] = trimesh.visual.TextureVisuals(uv=uv, material=mat)
        elif mesh.colors is not None:
            kwargs["vertex_colors"] = _u8(mesh.colors[used])
        g = trimesh.Trimesh(mesh.vertices[used].numpy(), local.view(-1, 3).numpy(), process=False,
                            vertex_normals=None if normals is None else normals[used].numpy(), **kwargs)
        scene.add_geometry(g, geom_name=f"{m.name}_{k}")
    return scene


def write_glb(mesh: TexturedMesh, path) -> Path:
    """A binary glTF with a pbrMetallicRoughness material per part, written atomically."""
    from engine.io import atomic_write_bytes

    path = Path(path)
    data = to_trimesh_scene(mesh).export(file_type="glb")
    atomic_write_bytes(path, data)
    return path
