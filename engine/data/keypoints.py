"""2D body keypoints: one order (COCO-17 + feet, 23 points) and readers for what detectors write.

Read: OpenPose BODY_25 JSON (a folder of per-frame files or one file), COCO keypoint JSON (results
lists or datasets; COCO-WholeBody's foot points when present), our own keypoints.json. Detected:
MediaPipe's BlazePose (an optional extra; its 33 landmarks mapped here). Every reader returns
(T, 23, 3) float arrays of (x, y, confidence) in pixels; a missing point has confidence 0.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from engine.errors import InputError
from engine.io import atomic_path

KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
             "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
             "right_knee", "left_ankle", "right_ankle", "left_big_toe", "right_big_toe", "left_small_toe",
             "right_small_toe", "left_heel", "right_heel")
SKELETON = np.array([[0, 1], [0, 2], [1, 3], [2, 4], [5, 6], [5, 7], [7, 9], [6, 8], [8, 10], [5, 11], [6, 12],
                     [11, 12], [11, 13], [13, 15], [12, 14], [14, 16], [15, 21], [15, 17], [17, 19], [16, 22],
                     [16, 18], [18, 20]], np.int32)

# OpenPose BODY_25 index of each of ours
_BODY25 = (0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11, 19, 22, 20, 23, 21, 24)
# MediaPipe Pose (33 landmarks); small toes have no landmark (-1)
_MEDIAPIPE = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28, 31, 32, -1, -1, 29, 30)
# COCO-WholeBody's 6 foot points after the 17 body points: left big toe, small toe, heel, then right
_WHOLEBODY_FEET = {17: 17, 18: 19, 19: 21, 20: 18, 21: 20, 22: 22}


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "keypoint file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(path, f"not readable JSON ({e})") from None


def _pick_person(people: list[np.ndarray], previous: np.ndarray | None) -> np.ndarray | None:
    """The person to follow: nearest to the last frame's, else the largest confident one."""
    if not people:
        return None

    def centre(p):
        ok = p[:, 2] > 0.1
        return p[ok, :2].mean(0) if ok.any() else None

    if previous is not None and centre(previous) is not None:
        c0 = centre(previous)
        dists = [np.linalg.norm(centre(p) - c0) if centre(p) is not None else np.inf for p in people]
        return people[int(np.argmin(dists))]

    def size(p):
        ok = p[:, 2] > 0.1
        if ok.sum() < 2:
            return 0.0
        return float(np.ptp(p[ok, 0]) * np.ptp(p[ok, 1])) * float(p[ok, 2].mean())

    return max(people, key=size)


def from_body25(flat, source) -> np.ndarray:
    a = np.asarray(flat, np.float64)
    if a.size != 75:
        raise InputError(source, f"expected 75 BODY_25 values (25 × x, y, c), found {a.size}")
    return a.reshape(25, 3)[list(_BODY25)]


def from_mediapipe(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """(33, 4) normalised (x, y, z, visibility) → (23, 3) pixels and confidence."""
    out = np.zeros((len(KEYPOINTS), 3))
    for ours, theirs in enumerate(_MEDIAPIPE):
        if theirs >= 0:
            x, y, _, vis = landmarks[theirs]
            out[ours] = (x * width, y * height, vis)
    return out


def read_openpose(path: Path) -> tuple[np.ndarray, list[str]]:
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise InputError(path, "no OpenPose .json files in this folder")
    frames, names, previous = [], [], None
    for f in files:
        d = _load_json(f)
        if not isinstance(d, dict) or "people" not in d:
            raise InputError(f, "not OpenPose output: no 'people' list")
        people = [from_body25(p.get("pose_keypoints_2d", []), f) for p in d["people"]]
        chosen = _pick_person(people, previous)
        frames.append(np.zeros((len(KEYPOINTS), 3)) if chosen is None else chosen)
        previous = chosen if chosen is not None else previous
        names.append(f.stem.replace("_keypoints", ""))
    return np.stack(frames), names


def _from_coco(flat, source) -> np.ndarray:
    a = np.asarray(flat, np.float64)
    if a.size not in (51, 69, 399):  # COCO, COCO + feet, COCO-WholeBody (133 points)
        raise InputError(source, f"expected 17 or 23 or 133 COCO keypoints × 3 values, found {a.size}")
    a = a.reshape(-1, 3)
    out = np.zeros((len(KEYPOINTS), 3))
    out[:17] = a[:17]
    if len(a) >= 23:
        for theirs, ours in _WHOLEBODY_FEET.items():
            out[ours] = a[theirs]
    # COCO visibility flags (0, 1, 2) become confidences; detector scores stay as they are
    out[:, 2] = np.where(out[:, 2] > 1.0, 1.0, out[:, 2])
    return out


def read_coco(path: Path) -> tuple[np.ndarray, list[str]]:
    d = _load_json(path)
    if isinstance(d, dict) and "annotations" in d:
        images = sorted(d.get("images", []), key=lambda im: im.get("file_name", str(im.get("id"))))
        order = [im["id"] for im in images] or sorted({a["image_id"] for a in d["annotations"]})
        names = {im["id"]: Path(im.get("file_name", str(im["id"]))).stem for im in images}
        anns = d["annotations"]
    elif isinstance(d, list):
        anns = d
        order = sorted({a.get("image_id") for a in anns if isinstance(a, dict)}, key=str)
        names = {}
    else:
        raise InputError(path, "not COCO keypoints: expected a results list or a dict with 'annotations'")
    by_image: dict = {}
    for a in anns:
        if not isinstance(a, dict) or "keypoints" not in a or "image_id" not in a:
            raise InputError(path, "a COCO annotation has no 'keypoints' or 'image_id'")
        by_image.setdefault(a["image_id"], []).append(_from_coco(a["keypoints"], path))
    frames, previous = [], None
    for image_id in order:
        chosen = _pick_person(by_image.get(image_id, []), previous)
        frames.append(np.zeros((len(KEYPOINTS), 3)) if chosen is None else chosen)
        previous = chosen if chosen is not None else previous
    if not frames:
        raise InputError(path, "no images with keypoints")
    return np.stack(frames), [names.get(i, str(i)) for i in order]


def read_ours(path: Path, d: dict) -> tuple[np.ndarray, list[str]]:
    names = d.get("names")
    if list(names or []) != list(KEYPOINTS):
        raise InputError(path, f"keypoint names differ from lumen3d's order {KEYPOINTS[:3]}…")
    try:
        kp = np.array([f["keypoints"] for f in d["frames"]], np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(path, f"malformed lumen3d keypoints ({e})") from None
    if kp.ndim != 3 or kp.shape[1:] != (len(KEYPOINTS), 3):
        raise InputError(path, f"keypoints must be (frames, {len(KEYPOINTS)}, 3), found {kp.shape}")
    return kp, [str(f.get("image", i)) for i, f in enumerate(d["frames"])]


def read_keypoints(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """Any supported keypoint file or folder → (T, 23, 3) and a name per frame."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "keypoint file or folder not found")
    try:
        if path.is_dir():
            kp, names = read_openpose(path)
        else:
            d = _load_json(path)
            if isinstance(d, dict) and d.get("format") == "lumen3d-keypoints":
                kp, names = read_ours(path, d)
            elif isinstance(d, dict) and "people" in d:
                kp, names = read_openpose(path)
            else:
                kp, names = read_coco(path)
        kp = np.asarray(kp, dtype=np.float64)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError, RecursionError) as e:
        # the formats' fields in a shape they never have (a list for a number, a number for a list...)
        raise InputError(path, f"malformed keypoint file ({e.__class__.__name__}: {str(e)[:100]})") from None
    if kp.ndim != 3 or kp.shape[1:] != (len(KEYPOINTS), 3):
        raise InputError(path, f"keypoints of shape {kp.shape}, expected (frames, {len(KEYPOINTS)}, 3)")
    if not np.isfinite(kp).all():
        raise InputError(path, "non-finite keypoint values")
    return kp, names


def write_keypoints(path: str | os.PathLike, keypoints: np.ndarray, images: list[str], width: int, height: int,
                    source: str) -> None:
    d = {"format": "lumen3d-keypoints", "source": source, "width": width, "height": height,
         "names": list(KEYPOINTS), "skeleton": SKELETON.tolist(),
         "frames": [{"image": im, "keypoints": np.round(k, 3).tolist()} for im, k in zip(images, keypoints)]}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(d))


def detect_mediapipe(frames, progress=None) -> np.ndarray:
    """BlazePose (full) on RGB uint8 frames (an iterable of (H, W, 3)) → (T, 23, 3); video mode tracks."""
    try:
        from mediapipe.python.solutions import pose as mp_pose
    except ImportError:
        raise InputError(None, "no keypoints given and the built-in detector is not installed: "
                               "pip install -c constraints.txt 'lumen3d[detect]' (mediapipe 0.10.21, numpy<2), "
                               "or pass --keypoints with OpenPose/COCO JSON") from None
    out = []
    with mp_pose.Pose(static_image_mode=False, model_complexity=1, enable_segmentation=False) as pose:
        for frame in frames:
            h, w = frame.shape[:2]
            res = pose.process(np.ascontiguousarray(frame))
            if res.pose_landmarks is None:
                out.append(np.zeros((len(KEYPOINTS), 3)))
            else:
                lm = np.array([(p.x, p.y, p.z, p.visibility) for p in res.pose_landmarks.landmark])
                out.append(from_mediapipe(lm, w, h))
            if progress is not None:
                progress()
    return np.stack(out) if out else np.zeros((0, len(KEYPOINTS), 3))
