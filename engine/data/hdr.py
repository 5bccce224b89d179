"""High-dynamic-range images for environment lighting: Radiance .hdr (RGBE, read here: imageio's
reader needs a FreeImage library it would download) and OpenEXR .exr (the OpenEXR package)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import InputError


def _rgbe_scanline(data: memoryview, pos: int, width: int) -> tuple[np.ndarray, int]:
    """One scanline (width, 4) uint8 at pos: new-style run-length encoded, or flat."""
    if width < 8 or width > 0x7FFF or data[pos] != 2 or data[pos + 1] != 2 or data[pos + 2] & 0x80:
        line = np.frombuffer(data[pos:pos + 4 * width], np.uint8).reshape(width, 4)
        if len(line) != width:
            raise ValueError("truncated")
        return line, pos + 4 * width
    if (data[pos + 2] << 8 | data[pos + 3]) != width:
        raise ValueError("bad scanline width")
    pos += 4
    out = np.empty((4, width), np.uint8)
    for c in range(4):
        x = 0
        while x < width:
            n = data[pos]
            pos += 1
            if n > 128:  # a run
                n -= 128
                if x + n > width:
                    raise ValueError("run past the scanline")
                out[c, x:x + n] = data[pos]
                pos += 1
            else:
                if n == 0 or x + n > width:
                    raise ValueError("bad literal")
                out[c, x:x + n] = np.frombuffer(data[pos:pos + n], np.uint8)
                pos += n
            x += n
    return out.T, pos


def read_hdr(path) -> np.ndarray:
    """A Radiance .hdr file → (H, W, 3) float32 linear radiance, top row first."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        header_end = raw.index(b"\n\n")
        header = raw[:header_end].decode("ascii", "replace")
        if not header.startswith(("#?RADIANCE", "#?RGBE")) or "FORMAT=32-bit_rle_rgbe" not in header:
            raise ValueError("not an RGBE Radiance file")
        line_end = raw.index(b"\n", header_end + 2)
        size = raw[header_end + 2:line_end].decode("ascii").split()
        if len(size) != 4 or size[0] != "-Y" or size[2] != "+X":
            raise ValueError(f"unsupported orientation {' '.join(size)!r}")
        height, width = int(size[1]), int(size[3])
        if not (0 < height <= 1 << 15 and 0 < width <= 1 << 15):
            raise ValueError("bad size")
        data, pos = memoryview(raw), line_end + 1
        rgbe = np.empty((height, width, 4), np.uint8)
        for y in range(height):
            rgbe[y], pos = _rgbe_scanline(data, pos, width)
    except (ValueError, IndexError) as e:
        raise InputError(path, f"not a readable .hdr image ({e})") from None
    e = rgbe[..., 3].astype(np.int32)
    scale = np.where(e > 0, np.ldexp(1.0, e - 136), 0.0).astype(np.float32)
    return rgbe[..., :3].astype(np.float32) * scale[..., None]


def write_hdr(path, img: np.ndarray) -> None:
    """(H, W, 3) linear float → flat (uncompressed) RGBE .hdr; for tests and exports."""
    img = np.asarray(img, np.float64)
    m = img.max(-1)
    mant, ex = np.frexp(m)
    scale = np.where(m > 1e-32, mant * 256.0 / np.maximum(m, 1e-32), 0.0)
    rgbe = np.zeros(img.shape[:2] + (4,), np.uint8)
    rgbe[..., :3] = np.clip(img * scale[..., None], 0, 255).astype(np.uint8)
    rgbe[..., 3] = np.where(m > 1e-32, ex + 128, 0)
    h, w = img.shape[:2]
    Path(path).write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + f"-Y {h} +X {w}\n".encode() + rgbe.tobytes())


def read_exr(path) -> np.ndarray:
    """An OpenEXR file's RGB channels → (H, W, 3) float32."""
    path = Path(path)
    try:
        import OpenEXR

        with OpenEXR.File(str(path)) as f:
            ch = f.channels()
            if "RGB" in ch:
                img = np.asarray(ch["RGB"].pixels, np.float32)
            elif "RGBA" in ch:
                img = np.asarray(ch["RGBA"].pixels, np.float32)[..., :3]
            elif all(c in ch for c in "RGB"):
                img = np.stack([np.asarray(ch[c].pixels, np.float32) for c in "RGB"], -1)
            else:
                raise ValueError(f"no RGB channels (has {', '.join(ch)})")
    except ImportError:
        raise InputError(path, "reading .exr needs the OpenEXR package (pip install OpenEXR)") from None
    except Exception as e:  # OpenEXR raises plain Exceptions on damaged files
        raise InputError(path, f"not a readable .exr image ({str(e)[:120]})") from None
    return img


def read_environment(path) -> np.ndarray:
    """An equirectangular environment map (.hdr, .exr; or an LDR image, decoded from sRGB) →
    (H, W, 3) float32 linear radiance."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such environment map")
    suffix = path.suffix.lower()
    if suffix == ".hdr":
        img = read_hdr(path)
    elif suffix == ".exr":
        img = read_exr(path)
    else:
        from PIL import Image

        try:
            a = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0
        except Exception:
            raise InputError(path, "not a readable image (an environment map is .hdr, .exr, .png or .jpg)") from None
        img = np.where(a <= 0.04045, a / 12.92, ((a + 0.055) / 1.055) ** 2.4).astype(np.float32)
    if img.ndim != 3 or img.shape[0] < 2 or img.shape[1] < 4:
        raise InputError(path, f"environment map too small ({img.shape[1]}x{img.shape[0]})")
    if not np.isfinite(img).all() or (img < 0).any():
        raise InputError(path, "environment map has negative or non-finite values")
    return img
