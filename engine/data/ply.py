"""PLY files: one checked header parser, vertices (ASCII or binary of either byte order), mesh faces
checked against the vertex count before any mesh reader sees them, and point clouds written."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine.errors import InputError
from engine.io import atomic_path

_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
          "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
          "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_FORMATS = ("ascii", "binary_little_endian", "binary_big_endian")
MAX_COUNT = 1 << 31


def _header(f, path: Path) -> tuple[str, list[tuple[str, int, list[tuple[str, str]]]]]:
    """Parse a PLY header: (format, [(element, count, [(property, type)])]), a list's type being
    'list:<count type>:<index type>'. Every count and type is checked here, so nothing downstream
    sees a negative, huge or non-numeric one."""
    if f.readline().strip() != b"ply":
        raise InputError(path, "not a PLY file (no 'ply' magic line)")
    fmt, elements = None, []
    for _ in range(100_000):
        line = f.readline()
        if not line:
            break
        text = line.decode("ascii", "replace").strip()
        words = text.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            if fmt is None:
                raise InputError(path, "PLY header has no 'format' line")
            return fmt, elements
        bad = InputError(path, f"bad PLY header line {text[:80]!r}")
        if words[0] == "format":
            if len(words) < 2 or words[1] not in _FORMATS:
                raise InputError(path, f"unsupported PLY format {' '.join(words[1:2])!r}")
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise bad
            count = int(words[2])
            if count > MAX_COUNT:
                raise InputError(path, f"implausible PLY element count {count}")
            if words[1] in (e[0] for e in elements):
                raise InputError(path, f"PLY element {words[1]!r} appears twice")
            elements.append((words[1], count, []))
        elif words[0] == "property":
            if not elements or len(words) < 3 or words[-1] in (n for n, _ in elements[-1][2]):
                raise bad  # a property outside an element, or one named twice
            if words[1] == "list":
                if len(words) != 5 or words[2] not in _TYPES or words[3] not in _TYPES:
                    raise bad
                elements[-1][2].append((words[4], f"list:{_TYPES[words[2]]}:{_TYPES[words[3]]}"))
            elif words[1] in _TYPES and len(words) == 3:
                elements[-1][2].append((words[2], _TYPES[words[1]]))
            else:
                raise bad
        else:
            raise bad
    raise InputError(path, "PLY header has no 'end_header'")


def ply_elements(path: str | os.PathLike) -> dict[str, tuple[int, list[str]]]:
    """The header's elements: name -> (count, property names). Tells a mesh, a point cloud
    and a Gaussian-splat file apart without reading the data."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "PLY file not found")
    with open(path, "rb") as f:
        _, elements = _header(f, path)
    return {name: (count, [p for p, _ in props]) for name, count, props in elements}


def read_ply_vertices(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The vertex element's properties by name. The vertex element must come first."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "PLY file not found")
    with open(path, "rb") as f:
        fmt, elements = _header(f, path)
        if not elements or elements[0][0] != "vertex" or not elements[0][2]:
            raise InputError(path, "PLY file has no vertex element (first)")
        _, count, props = elements[0]
        if any(t.startswith("list") for _, t in props):
            raise InputError(path, "unsupported list property in the vertex element")
        if fmt.startswith("binary"):
            order = "<" if fmt == "binary_little_endian" else ">"
            dtype = np.dtype([(n, order + t) for n, t in props])
            size = dtype.itemsize * count
            if size > path.stat().st_size:
                raise InputError(path, f"PLY file is truncated ({count} vertices need {size} bytes)")
            data = f.read(size)
            if len(data) < size:
                raise InputError(path, f"PLY file is truncated ({len(data)} of {size} vertex bytes)")
            arr = np.frombuffer(data, dtype=dtype)
            return {n: arr[n].astype(arr[n].dtype.newbyteorder("=")) for n, _ in props}
        try:
            rows = np.loadtxt(f, dtype=np.float64, max_rows=count, ndmin=2) if count else np.zeros((0, len(props)))
        except ValueError as e:
            raise InputError(path, f"bad ASCII PLY data ({str(e)[:120]})") from None
        if rows.shape != (count, len(props)):
            raise InputError(path, f"PLY file has {rows.shape[0]} vertex rows, header says {count}")
        if not np.isfinite(rows).all() and any(np.dtype(t).kind in "iu" for _, t in props):
            raise InputError(path, "non-finite values in integer PLY properties")
        return {n: rows[:, i].astype(t) for i, (n, t) in enumerate(props)}


def read_ply_faces(path: str | os.PathLike) -> np.ndarray | None:
    """The face element's vertex indices (F, 3) of a triangle-mesh PLY, checked against the vertex
    count (a negative or out-of-range index would crash a mesh reader); None without faces.
    Polygons with more than three corners are fanned into triangles."""
    path = Path(path)
    with open(path, "rb") as f:
        fmt, elements = _header(f, path)
        names = [e[0] for e in elements]
        if "face" not in names:
            return None
        if names[0] != "vertex" or names[1:2] != ["face"]:
            raise InputError(path, "a mesh PLY must list its vertex element, then its face element")
        (_, nv, vprops), (_, nf, fprops) = elements[0], elements[1]
        if len(fprops) != 1 or not fprops[0][1].startswith("list") or any(t.startswith("list") for _, t in vprops):
            raise InputError(path, "unsupported mesh PLY: faces must hold only their vertex list, vertices no lists")
        data = f.read()
    if fmt == "ascii":
        lines = data.decode("ascii", "replace").splitlines()
        rows = lines[nv:nv + nf]
        if len(rows) < nf:
            raise InputError(path, f"PLY file has {len(rows)} face rows, header says {nf}")
        faces = []
        for r in rows:
            try:
                w = [int(v) for v in r.split()]
            except ValueError:
                raise InputError(path, f"bad face row {r[:60]!r}") from None
            if not w or w[0] < 3 or len(w) != w[0] + 1:
                raise InputError(path, f"bad face row {r[:60]!r}")
            faces += [(w[1], w[k], w[k + 1]) for k in range(2, w[0])]
        faces = np.array(faces, np.int64).reshape(-1, 3)
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        raw = data
        pos = np.dtype([(n, order + t) for n, t in vprops]).itemsize * nv
        _, count_t, index_t = fprops[0][1].split(":")
        ct, it = np.dtype(order + count_t), np.dtype(order + index_t)
        tri = np.dtype([("n", ct), ("i", it, 3)])
        block = np.frombuffer(raw, tri, nf, pos) if pos + tri.itemsize * nf <= len(raw) else None
        if block is not None and (block["n"] == 3).all():  # the usual all-triangle mesh, read at once
            faces = block["i"].astype(np.int64)
        else:
            faces = []
            for _ in range(nf):
                if pos + ct.itemsize > len(raw):
                    raise InputError(path, "PLY file is truncated in its faces")
                n = int(np.frombuffer(raw, ct, 1, pos)[0])
                pos += ct.itemsize
                if n < 3 or pos + n * it.itemsize > len(raw):
                    raise InputError(path, f"bad or truncated face of {n} corners")
                idx = np.frombuffer(raw, it, n, pos).astype(np.int64)
                pos += n * it.itemsize
                faces += [(idx[0], idx[k], idx[k + 1]) for k in range(1, n - 1)]
            faces = np.array(faces, np.int64).reshape(-1, 3)
    if len(faces) and (faces.min() < 0 or faces.max() >= nv):
        raise InputError(path, f"face vertex index out of range (indices {faces.min()}..{faces.max()}, "
                               f"{nv} vertices)")
    return faces


def write_ply_points(path: str | os.PathLike, xyz: np.ndarray, rgb: np.ndarray | None = None) -> None:
    """Binary little-endian PLY with float x, y, z and optional uchar red, green, blue."""
    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if rgb is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    arr = np.empty(len(xyz), dtype=fields)
    arr["x"], arr["y"], arr["z"] = xyz.T
    if rgb is not None:
        rgb = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
        arr["red"], arr["green"], arr["blue"] = rgb.T
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(arr)}"]
    header += [f"property {'float' if t == '<f4' else 'uchar'} {n}" for n, t in fields]
    header.append("end_header\n")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write("\n".join(header).encode("ascii"))
            f.write(arr.tobytes())
