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
    from engine.io import read_npz

    d = read_npz(path, "body sequence")
    try:
        return _sequence(d, path)
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as e:
        raise InputError(path, f"malformed body sequence ({e.__class__.__name__}: {str(e)[:100]})") from None


def _sequence(d: dict, path: Path) -> BodySequence:
    for key in ("vertices", "faces"):
        if key not in d:
            raise InputError(path, f"not a body sequence: no {key!r} array")
    v, f = d["vertices"], d["faces"]
    if v.ndim != 3 or v.shape[2] != 3 or len(v) == 0 or f.ndim != 2 or f.shape[1] != 3:
        raise InputError(path, f"vertices must be (T, V, 3) and faces (F, 3), got {v.shape} and {f.shape}")
    if v.dtype.kind not in "fiu" or f.dtype.kind not in "iu":
        raise InputError(path, f"vertices must be numbers and faces integers, got {v.dtype} and {f.dtype}")
    if not np.isfinite(v).all():
        raise InputError(path, "non-finite vertex positions")
    if f.size and (f.min() < 0 or f.max() >= v.shape[1]):
        raise InputError(path, f"faces index vertices outside 0..{v.shape[1] - 1}")
    fps = float(d.get("fps", 30.0))
    if not 0 < fps <= 1000:
        raise InputError(path, f"fps {fps} is not in (0, 1000]")
    seq = BodySequence(v.astype(np.float32), f.astype(np.int32), fps)
    if "keypoints2d" in d:
        kp = d["keypoints2d"]
        if kp.ndim != 3 or kp.shape[0] != len(v) or kp.shape[2] != 3 or not np.isfinite(kp).all():
            raise InputError(path, f"keypoints2d must be ({len(v)}, K, 3) and finite, got {kp.shape}")
        seq.keypoints2d = kp.astype(np.float32)
        skeleton = np.asarray(d.get("skeleton", COCO_SKELETON))
        if skeleton.ndim != 2 or skeleton.shape[1] != 2 or (skeleton.size and (skeleton.min() < 0
                                                                              or skeleton.max() >= kp.shape[1])):
            raise InputError(path, f"skeleton must be (E, 2) pairs of keypoint indices, got {skeleton.shape}")
        seq.skeleton = skeleton.astype(np.int32)
    if "K" in d:
        K, c2w = np.asarray(d["K"], np.float64), np.asarray(d.get("c2w", np.eye(4)), np.float64)
        width, height = int(d["width"]), int(d["height"])
        if K.shape != (3, 3) or c2w.shape != (4, 4) or not (np.isfinite(K).all() and np.isfinite(c2w).all()):
            raise InputError(path, "camera K must be 3x3 and c2w 4x4, finite")
        if not (0 < width <= 1 << 15 and 0 < height <= 1 << 15):
            raise InputError(path, f"camera size {width}x{height} is not a picture size")
        seq.K, seq.width, seq.height, seq.c2w = K, width, height, c2w
    if "frames" in d:
        names = [str(s) for s in d["frames"]]
        if len(names) != len(v):
            raise InputError(path, f"{len(names)} frame paths for {len(v)} frames")
        # frames may live beside the fit's input photos, outside this folder: only photos are read
        from engine.data.images import IMAGE_SUFFIXES

        bad = [n for n in names if Path(n).suffix.lower() not in IMAGE_SUFFIXES]
        if bad:
            raise InputError(path, f"frame {bad[0][:80]!r} is not a photo ({', '.join(sorted(IMAGE_SUFFIXES))})")
        seq.frames = [path.parent / n for n in names]
    return seq
