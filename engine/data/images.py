"""Image files: size from the header, decoding with clear errors, cached downscaled copies.

Downscaled copies live in a cache folder outside the dataset (``$LUMEN3D_CACHE`` or
``~/.cache/lumen3d``), keyed by the source file's absolute path, size and mtime, so the
input folder is never written to and a changed source is never served stale.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from engine.errors import InputError
from engine.io import atomic_path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def cache_dir() -> Path:
    return Path(os.environ.get("LUMEN3D_CACHE", Path.home() / ".cache" / "lumen3d"))


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise InputError(path, "image file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except Exception as e:  # PIL raises many types for bad files
        raise InputError(path, f"not a readable image ({e.__class__.__name__}: {e})") from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    with _open(path) as im:
        return im.size


def has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info)


def file_has_alpha(path: Path) -> bool:
    """Whether the photo has an alpha channel, from its header."""
    with _open(path) as im:
        return has_alpha(im)


def _decode(im: Image.Image, path: Path) -> np.ndarray:
    """float32 (H, W, 3 or 4) in [0, 1] from any mode Pillow opens: 8-bit, 16-bit and 32-bit
    integer greyscale scaled by their range, float images (32-bit TIFF) taken as [0, 1]."""
    try:
        im.load()
    except Exception as e:
        raise InputError(path, f"corrupt or truncated image ({e.__class__.__name__}: {e})") from None
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode == "F":
            if not np.isfinite(a).all():
                raise InputError(path, "float image with NaN or infinite pixels")
        else:  # 16-bit PNG/TIFF greyscale comes as I;16 or I (values up to 65535)
            a = a / 65535.0
        a = np.clip(a, 0.0, 1.0).astype(np.float32)
        return np.repeat(a[..., None], 3, axis=-1)
    im = im.convert("RGBA" if has_alpha(im) else "RGB")
    return np.asarray(im, dtype=np.float32) / 255.0


def read_image(path: Path) -> np.ndarray:
    """Decode to float32 in [0, 1], shape (H, W, 3) or (H, W, 4) when the file has alpha."""
    with _open(path) as im:
        return _decode(im, path)


def composite(rgba, background):
    """RGBA (..., 4) over a background → (..., 3); RGB input passes through. numpy or torch; the
    background is one colour (3,) or one per pixel or ray (..., 3). The one alpha-over of the
    engine: targets, renders and previews all composite through it."""
    if rgba.shape[-1] == 3:
        return rgba
    alpha = rgba[..., 3:4]
    if isinstance(rgba, np.ndarray):
        background = np.asarray(background, dtype=np.float32)
    else:
        import torch

        background = torch.as_tensor(background, dtype=rgba.dtype, device=rgba.device)
    return rgba[..., :3] * alpha + background * (1.0 - alpha)


def downscaled_size(width: int, height: int, factor: float) -> tuple[int, int]:
    return max(1, round(width / factor)), max(1, round(height / factor))


def downscaled_copy(path: Path, factor: float) -> Path:
    """Path of `path` downscaled by `factor` (area filter), made once and cached."""
    if factor == 1:
        return path
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{factor:g}".encode()).hexdigest()[:20]
    out = cache_dir() / "downscaled" / f"{key}.png"
    if out.is_file():
        return out
    with _open(path) as im:
        if im.mode in ("RGB", "RGBA", "L", "LA"):
            try:
                im.load()
            except Exception as e:
                raise InputError(path, f"corrupt or truncated image ({e.__class__.__name__}: {e})") from None
        else:  # palette, 16-bit, float, CMYK...: decoded as read_image reads them
            im = Image.fromarray((_decode(im, path) * 255).round().astype(np.uint8))
        # Pillow premultiplies alpha while resampling RGBA, so edges do not pick up the colour
        # of fully transparent pixels.
        small = im.resize(downscaled_size(*im.size, factor), Image.Resampling.BOX)
    with atomic_path(out) as tmp:
        small.save(tmp, format="PNG")
    return out
