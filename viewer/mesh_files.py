"""Mesh files as Open3D reads them (materials and textures included), for checking, framing and
drawing."""
from __future__ import annotations

import functools

import numpy as np


def read_mesh(path):
    """An Open3D TriangleMeshModel (OBJ/GLB/glTF/FBX with their materials: UV textures, PBR
    maps) or, for the formats Open3D reads itself (PLY/OFF/STL), a TriangleMesh with its vertex
    colours. Returns (geometry, is_model); an empty mesh comes back as (None, False)."""
    import open3d as o3d

    check_indices(path)
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    if str(path).lower().endswith((".ply", ".off", ".stl")):
        mesh = o3d.io.read_triangle_mesh(str(path))
        if len(mesh.triangles) == 0:
            return None, False
        if not mesh.has_vertex_normals():
            mesh.compute_vertex_normals()
        return mesh, False
    model = o3d.io.read_triangle_model(str(path))
    if not model.meshes or all(len(m.mesh.triangles) == 0 for m in model.meshes):
        return None, True
    for m in model.meshes:
        if not m.mesh.has_vertex_normals():
            m.mesh.compute_vertex_normals()
    return model, True


@functools.lru_cache(maxsize=16)
def mesh_points(path) -> np.ndarray:
    """All vertices of a mesh file (read once: framing asks for them repeatedly), read-only."""
    geometry, is_model = read_mesh(path)
    meshes = [m.mesh for m in geometry.meshes] if is_model else [geometry]
    pts = np.concatenate([np.asarray(m.vertices) for m in meshes])
    pts.flags.writeable = False
    return pts


def check_indices(path) -> None:
    """Refuse a PLY or OFF mesh whose faces name vertices it does not have, before Open3D reads it:
    its readers crash the process (heap corruption, segfault) on a negative or out-of-range index."""
    from pathlib import Path

    from engine.data.ply import read_ply_faces
    from engine.errors import InputError

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        read_ply_faces(path)
    elif suffix == ".off":
        lines = [ln.split("#")[0].split() for ln in path.read_bytes().decode("ascii", "replace").splitlines()]
        lines = [w for w in lines if w]
        try:
            if not lines or not lines[0][0].endswith("OFF"):
                raise ValueError
            counts = lines[0][1:] or lines.pop(1)
            nv, nf = int(counts[0]), int(counts[1])
            for w in lines[1 + nv:1 + nv + nf]:  # a face: n, its n vertex indices, an optional colour
                n = int(w[0])
                idx = [int(v) for v in w[1:1 + n]]
                if n < 3 or len(idx) != n or min(idx) < 0 or max(idx) >= nv:
                    raise InputError(path, f"face with vertex indices {idx[:6]} out of range ({nv} vertices)")
        except (ValueError, IndexError):
            raise InputError(path, "not a readable OFF mesh") from None
