"""Open3D's offscreen renderer (Filament; on a machine with no GPU it runs on Mesa's CPU Vulkan
driver): PNGs, turntable videos and body-fit overlays of the same scene description."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

from viewer.framing import View

log = logging.getLogger("lumen3d")


def srgb_encode(x: np.ndarray) -> np.ndarray:
    """Linear → sRGB, for colours drawn with post-processing off (Filament then writes linear
    values, while it decodes textures and the background from sRGB)."""
    x = np.asarray(x, np.float64)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(np.maximum(x, 0.0031308), 1 / 2.4) - 0.055)


def srgb_decode(x: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(x, np.float64), 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))


def _encode_u8(img: np.ndarray) -> np.ndarray:
    return np.round(srgb_encode(img / 255.0) * 255).astype(np.uint8)


@dataclass(frozen=True)
class Colours:
    """How the colours a file gives (sRGB, as photos and splat viewers use them) go into
    Filament, which decodes textures and backgrounds from sRGB, takes vertex colours as linear,
    and (post-processing off) writes linear values out.

    linear=True: shading happens in linear light and the image is sRGB-encoded afterwards, so
    vertex colours go in decoded. linear=False: the image is kept as written, because Open3D
    composites Gaussian splats — display values — straight into it; vertex colours then go in
    as given and textures pre-encoded, and lit surfaces come out darker than a display would
    show them."""

    linear: bool = True

    def vertex(self, rgb) -> np.ndarray:
        return srgb_decode(rgb) if self.linear else np.clip(np.asarray(rgb, np.float64), 0.0, 1.0)

    def texture(self, img: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(img if self.linear else _encode_u8(img), dtype=np.uint8)

    def background(self, rgb) -> np.ndarray:
        return np.asarray(rgb, np.float64) if self.linear else srgb_encode(rgb)

    def output(self, img: np.ndarray) -> np.ndarray:
        return _encode_u8(img) if self.linear else img


@dataclass
class Drawable:
    name: str
    geometry: object  # open3d geometry, tensor point cloud, or TriangleMeshModel (is_model)
    material: object | None  # rendering.MaterialRecord; None for models (they carry theirs)
    time: float | None = None  # animation time in seconds (body sequences)
    is_model: bool = False


@contextlib.contextmanager
def native_output_to_log():
    """Filament prints its start-up lines from C++ straight to fd 1/2; send them to the log."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines():
                log.debug("open3d: %s", line)


def _fixed_mmap_threshold() -> None:
    """Pin glibc's mmap threshold at its default 128 KiB. Freeing a large block (reading a mesh
    of a few hundred thousand faces does) raises the threshold dynamically, and Filament on
    llvmpipe then renders such a mesh for minutes instead of 2 s (measured: a 516k-face NeRF mesh
    after trimesh or Open3D had read it once). Setting the threshold explicitly turns the dynamic
    adjustment off."""
    import ctypes

    try:
        ctypes.CDLL(None).mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


class OffscreenView:
    """One offscreen renderer of a fixed size; what it returns has the colours the inputs
    gave (see `Colours`). `lit` adds the viewer's lights for shaded surfaces."""

    def __init__(self, width: int, height: int, background=(1.0, 1.0, 1.0), lit: bool = True,
                 colours: Colours = Colours(), crop: tuple[int, int] | None = None, margin: int = 0):
        """`crop`: render in pieces of at most this size and stitch them (exact for a pinhole
        camera: each piece is the same camera with its principal point shifted), each rendered
        with `margin` pixels around it so that what is centred just outside still reaches in."""
        import open3d as o3d
        from open3d.visualization import rendering

        o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
        _fixed_mmap_threshold()
        self.width, self.height = int(width), int(height)
        self.piece = (min(self.width, crop[0]), min(self.height, crop[1])) if crop else (self.width, self.height)
        self.margin = int(margin) if crop else 0
        with native_output_to_log():
            self.renderer = rendering.OffscreenRenderer(self.piece[0] + 2 * self.margin, self.piece[1] + 2 * self.margin)
        self.colours = colours
        scene = self.renderer.scene
        if lit:
            scene.set_lighting(scene.LightingProfile.NO_SHADOWS, np.array([0.577, -0.577, -0.577], np.float32))
        scene.view.set_post_processing(False)  # no tone mapping, no haze: the colours as given
        scene.set_background([*colours.background(background), 1.0])
        self.names: list[str] = []

    def add(self, drawables: list[Drawable]) -> None:
        scene = self.renderer.scene
        for d in drawables:
            if d.is_model:
                scene.add_model(d.name, d.geometry)
            else:
                scene.add_geometry(d.name, d.geometry, d.material)
            self.names.append(d.name)

    def clear(self) -> None:
        self.renderer.scene.clear_geometry()
        self.names.clear()

    def close(self) -> None:
        """Filament aborts the process if a renderer dies with geometry still in its scene."""
        if self.renderer is not None:
            self.clear()
            self.renderer = None

    def __enter__(self) -> "OffscreenView":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _set_camera(self, view: View, x0: int, y0: int) -> None:
        K = view.K.copy()
        K[0, 2] -= x0 - self.margin
        K[1, 2] -= y0 - self.margin
        w, h = self.piece[0] + 2 * self.margin, self.piece[1] + 2 * self.margin
        scale = max(float(np.linalg.norm(view.c2w[:3, 3])), 1.0)
        self.renderer.setup_camera(K, view.w2c, w, h)
        self.renderer.scene.camera.set_projection(K, 0.001 * scale, 1000.0 * scale, w, h)

    def render(self, view: View) -> np.ndarray:
        """(H, W, 3) uint8."""
        if (view.width, view.height) != (self.width, self.height):
            raise ValueError(f"view is {view.width}x{view.height}, renderer {self.width}x{self.height}")
        w, h, m = *self.piece, self.margin
        out = np.empty((self.height, self.width, 3), np.uint8)
        for y0 in range(0, self.height, h):
            for x0 in range(0, self.width, w):
                self._set_camera(view, x0, y0)
                with native_output_to_log():
                    img = np.asarray(self.renderer.render_to_image())
                hh, ww = min(h, self.height - y0), min(w, self.width - x0)
                out[y0:y0 + hh, x0:x0 + ww] = img[m:m + hh, m:m + ww]
        return self.colours.output(out)

    def depth(self, view: View) -> np.ndarray:
        """(H, W) camera-space depth of what was drawn (inf where nothing was)."""
        if self.piece != (self.width, self.height) or self.margin:
            raise ValueError("depth of a view rendered in pieces")
        self._set_camera(view, 0, 0)
        with native_output_to_log():
            z = np.asarray(self.renderer.render_to_depth_image(z_in_view_space=True)).astype(np.float64)
        return np.where(np.isfinite(z) & (z > 0), z, np.inf)


def save_png(img: np.ndarray, path) -> None:
    from engine.io import write_png

    write_png(img, path)


def draw_keypoints(img: np.ndarray, keypoints: np.ndarray, skeleton: np.ndarray, scale: float = 1.0,
                   min_conf: float = 0.1) -> np.ndarray:
    """Detected 2D keypoints (K, 3: x, y, confidence) and their bones over an image."""
    from PIL import Image, ImageDraw

    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    r = max(2, round(min(img.shape[:2]) / 150))
    kp = np.asarray(keypoints, np.float64)
    ok = kp[:, 2] > min_conf
    for a, b in np.asarray(skeleton):
        if a < len(kp) and b < len(kp) and ok[a] and ok[b]:
            draw.line([tuple(kp[a, :2] * scale), tuple(kp[b, :2] * scale)], fill=(40, 220, 60), width=max(1, r // 2))
    for (x, y, _), good in zip(kp, ok):
        if good:
            draw.ellipse([x * scale - r, y * scale - r, x * scale + r, y * scale + r], fill=(255, 40, 40))
    return np.asarray(pil)
