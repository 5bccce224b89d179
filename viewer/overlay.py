"""A fitted mesh drawn over its photo, fast enough for every frame of a video.

Open3D's offscreen renderer on a CPU-only machine takes seconds per frame for a textured photo plus a
body mesh (measured ≈10 s at 960×960 on 2 cores), so video overlays are drawn here instead: the mesh's
front faces sorted back to front and filled with Lambert shading from the camera, then blended over the
frame, with the 2D keypoints on top.
"""
from __future__ import annotations

import numpy as np

from viewer.offscreen import draw_keypoints

BODY_COLOUR = np.array([150, 185, 235], np.float64)


def draw_mesh(frame: np.ndarray, vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, alpha: float = 0.7,
              scale: float = 1.0) -> np.ndarray:
    """frame (H, W, 3) uint8; vertices (V, 3) in the camera's OpenCV frame; K (3, 3) for the frame's
    original size, `scale` = output size / original size. Returns (H, W, 3) uint8."""
    from PIL import Image, ImageDraw

    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    z = v[:, 2]
    uv = (v[:, :2] / np.maximum(z, 1e-6)[:, None]) * [K[0, 0], K[1, 1]] + K[:2, 2]
    uv *= scale
    tri = v[f]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    centre = tri.mean(1)
    facing = (normal * centre).sum(1) < 0  # towards the camera at the origin
    in_front = (z[f] > 1e-3).all(1)
    keep = np.flatnonzero(facing & in_front)
    if not len(keep):
        return frame.copy()
    n = normal[keep] / np.maximum(np.linalg.norm(normal[keep], axis=1, keepdims=True), 1e-12)
    view = -centre[keep] / np.maximum(np.linalg.norm(centre[keep], axis=1, keepdims=True), 1e-12)
    shade = 0.35 + 0.65 * np.clip((n * view).sum(1), 0, 1)
    colours = np.clip(BODY_COLOUR[None] * shade[:, None], 0, 255).astype(np.uint8)
    order = np.argsort(-centre[keep, 2])  # far first
    layer = Image.new("RGB", (frame.shape[1], frame.shape[0]))
    mask = Image.new("L", (frame.shape[1], frame.shape[0]))
    draw, mdraw = ImageDraw.Draw(layer), ImageDraw.Draw(mask)
    pts = uv[f[keep]]
    for i in order:
        p = [tuple(q) for q in pts[i]]
        draw.polygon(p, fill=tuple(int(c) for c in colours[i]))
        mdraw.polygon(p, fill=255)
    m = np.asarray(mask, np.float64)[..., None] / 255.0 * alpha
    out = frame.astype(np.float64) * (1 - m) + np.asarray(layer, np.float64) * m
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def overlay_frames(seq, size: tuple[int, int] | None = None, keypoints: bool = True):
    """Yield overlay images for every frame of a BodySequence that has frames and a camera."""
    from PIL import Image

    from engine.data.images import read_image

    W, H = seq.width, seq.height
    out_w, out_h = size or (W, H)
    scale = out_w / W
    w2c = np.linalg.inv(seq.c2w)
    for t in range(seq.num_frames):
        img = (read_image(seq.frames[t])[..., :3] * 255).round().astype(np.uint8)
        if (img.shape[1], img.shape[0]) != (out_w, out_h):
            img = np.asarray(Image.fromarray(img).resize((out_w, out_h), Image.BILINEAR))
        v = seq.vertices[t] @ w2c[:3, :3].T + w2c[:3, 3]
        img = draw_mesh(img, v, seq.faces, seq.K, scale=scale)
        if keypoints and seq.keypoints2d is not None:
            img = draw_keypoints(img, seq.keypoints2d[t], seq.skeleton, scale=scale)
        yield img
