"""The body-sequence file: fitted body meshes over time, with what they were fitted to.

One `.npz` (read with allow_pickle=False), written by body fitting and read by the viewer:
  vertices (T, V, 3) float32 — world space (for a fit: the fitting camera's frame is given by c2w)
  faces (F, 3) int32
  fps () float
optional:
  keypoints2d (T, K, 3) float32 — detected (x, y, confidence) in the frame's pixels
  skeleton (E, 2) int32 — keypoint pairs to draw as bones
  K (3, 3), width (), height (), c2w (4, 4) — the camera the frames were seen from (OpenCV axes)
  frames (T,) str — image paths relative to the file
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import InputError
from engine.io import atomic_path

# COCO-17: nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles
COCO_SKELETON = np.array([[0, 1], [0, 2], [1, 3], [2, 4], [5, 6], [5, 7], [7, 9], [6, 8], [8, 10], [5, 11],
                          [6, 12], [11, 12], [11, 13], [13, 15], [12, 14], [14, 16]], np.int32)


@dataclass
class BodySequence:
    vertices: np.ndarray
    faces: np.ndarray
    fps: float = 30.0
    keypoints2d: np.ndarray | None = None
    skeleton: np.ndarray | None = None
    K: np.ndarray | None = None
    width: int | None = None
    height: int | None = None
    c2w: np.ndarray | None = None
    frames: list[Path] | None = None

    @property
    def num_frames(self) -> int:
        return len(self.vertices)


def save_sequence(seq: BodySequence, path: str | os.PathLike) -> None:
    arrays = {"vertices": np.asarray(seq.vertices, np.float32), "faces": np.asarray(seq.faces, np.int32),
              "fps": np.float64(seq.fps)}
    if seq.keypoints2d is not None:
        arrays["keypoints2d"] = np.asarray(seq.keypoints2d, np.float32)
        arrays["skeleton"] = np.asarray(COCO_SKELETON if seq.skeleton is None else seq.skeleton, np.int32)
    if seq.K is not None:
        arrays.update(K=np.asarray(seq.K, np.float64), width=np.int64(seq.width), height=np.int64(seq.height),
                      c2w=np.asarray(np.eye(4) if seq.c2w is None else seq.c2w, np.float64))
    if seq.frames is not None:
        base = Path(path).resolve().parent
        arrays["frames"] = np.array([os.path.relpath(Path(f).resolve(), base) for f in seq.frames], dtype=str)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def load_sequence(path: str | os.PathLike) -> BodySequence:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise InputError(path, f"not a readable .npz body sequence ({e})") from None
    for key in ("vertices", "faces"):
        if key not in d:
            raise InputError(path, f"not a body sequence: no {key!r} array")
    v, f = d["vertices"], d["faces"]
    if v.ndim != 3 or v.shape[2] != 3 or len(v) == 0 or f.ndim != 2 or f.shape[1] != 3:
        raise InputError(path, f"vertices must be (T, V, 3) and faces (F, 3), got {v.shape} and {f.shape}")
    if not np.isfinite(v).all():
        raise InputError(path, "non-finite vertex positions")
    if f.size and (f.min() < 0 or f.max() >= v.shape[1]):
        raise InputError(path, f"faces index vertices outside 0..{v.shape[1] - 1}")
    seq = BodySequence(v.astype(np.float32), f.astype(np.int32), float(d.get("fps", 30.0)))
    if "keypoints2d" in d:
        kp = d["keypoints2d"]
        if kp.ndim != 3 or kp.shape[0] != len(v) or kp.shape[2] != 3:
            raise InputError(path, f"keypoints2d must be ({len(v)}, K, 3), got {kp.shape}")
        seq.keypoints2d = kp.astype(np.float32)
        seq.skeleton = d.get("skeleton", COCO_SKELETON).astype(np.int32)
    if "K" in d:
        seq.K, seq.width, seq.height = d["K"].astype(np.float64), int(d["width"]), int(d["height"])
        seq.c2w = d.get("c2w", np.eye(4)).astype(np.float64)
    if "frames" in d:
        names = [str(s) for s in d["frames"]]
        if len(names) != len(v):
            raise InputError(path, f"{len(names)} frame paths for {len(v)} frames")
        seq.frames = [path.parent / n for n in names]
    return seq
