"""Minimal PLY vertex I/O (binary little-endian and ASCII) for point clouds."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine.errors import InputError
from engine.io import atomic_path

_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
          "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
          "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def ply_elements(path: str | os.PathLike) -> dict[str, tuple[int, list[str]]]:
    """The header's elements: name -> (count, property names). Tells a mesh, a point cloud
    and a Gaussian-splat file apart without reading the data."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "PLY file not found")
    elements: dict[str, tuple[int, list[str]]] = {}
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise InputError(path, "not a PLY file (no 'ply' magic line)")
        for _ in range(100_000):
            line = f.readline()
            if not line:
                break
            words = line.decode("ascii", "replace").split()
            if words[:1] == ["end_header"]:
                return elements
            try:
                if words[:1] == ["element"]:
                    elements[words[1]] = (int(words[2]), [])
                    current = words[1]
                elif words[:1] == ["property"]:
                    elements[current][1].append(words[-1])
            except (IndexError, ValueError, NameError):
                raise InputError(path, f"bad PLY header line {line.decode('ascii', 'replace').strip()!r}") from None
    raise InputError(path, "PLY header has no 'end_header'")


def read_ply_vertices(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The vertex element's properties by name. Only a leading 'vertex' element is read."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "PLY file not found")
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise InputError(path, "not a PLY file (no 'ply' magic line)")
        fmt, count, props, element = None, None, [], None
        while True:
            line = f.readline()
            if not line:
                raise InputError(path, "PLY header has no 'end_header'")
            words = line.decode("ascii", "replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "end_header":
                break
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                element = words[1]
                if element == "vertex":
                    count = int(words[2])
            elif words[0] == "property" and element == "vertex":
                if words[1] == "list" or words[1] not in _TYPES:
                    raise InputError(path, f"unsupported vertex property {' '.join(words[1:])!r}")
                props.append((words[2], _TYPES[words[1]]))
        if count is None or not props:
            raise InputError(path, "PLY file has no vertex element")
        if fmt == "binary_little_endian":
            dtype = np.dtype([(n, "<" + t) for n, t in props])
            data = f.read(dtype.itemsize * count)
            if len(data) < dtype.itemsize * count:
                raise InputError(path, f"PLY file is truncated ({len(data)} of {dtype.itemsize * count} vertex bytes)")
            arr = np.frombuffer(data, dtype=dtype)
            return {n: arr[n].copy() for n, _ in props}
        if fmt == "ascii":
            try:
                rows = np.loadtxt(f, dtype=np.float64, max_rows=count, ndmin=2)
            except ValueError as e:
                raise InputError(path, f"bad ASCII PLY data ({e})") from None
            if rows.shape != (count, len(props)):
                raise InputError(path, f"PLY file has {rows.shape[0]} vertex rows, header says {count}")
            return {n: rows[:, i].astype(t) for i, (n, t) in enumerate(props)}
        raise InputError(path, f"unsupported PLY format {fmt!r}")


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
