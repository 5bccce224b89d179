"""File helpers: atomic writes and reads that fail with a one-line InputError."""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from engine.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`.

    Readers never see a half-written file, and a crash leaves the old file in place.
    The temporary name keeps the suffix so that writers that pick a format from it work.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a folder; give a file name to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as e:
        raise InputError(path, f"cannot write here ({e.strerror or e.__class__.__name__})") from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp makes 0600, and some writers (safetensors) replace the file with their own 0600 one:
        # the output gets what open() would have given it, whoever wrote it
        os.chmod(tmp, 0o666 & ~_umask())
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise InputError(path, f"cannot write here ({e.strerror or e.__class__.__name__})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask, read without changing it (os.umask sets it, racing other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot read file ({e.__class__.__name__})") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except RecursionError:
        raise InputError(path, "JSON nested too deeply") from None


def require_dir(path: str | os.PathLike, what: str = "folder") -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(path, f"{what} not found")
    if not path.is_dir():
        raise InputError(path, f"not a {what}")
    return path


def resolve_inside(root: Path, rel: str, source: str | os.PathLike, suffixes: tuple[str, ...] = ("",)) -> Path:
    """The file `rel` names under `root`: completed first (the first of `rel` + each suffix that
    exists, e.g. Blender's extension-less paths), then resolved (links followed), then refused if
    it is not strictly inside `root` ('../../etc/passwd', an absolute path, a link out, '.')."""
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise InputError(source, f"invalid file path {rel!r}")
    candidates = [root / (rel + s) for s in suffixes]
    target = next((c for c in candidates if c.is_file()), candidates[0])
    return contained(root, target, source, rel)


def contained(root: Path, path: Path, source: str | os.PathLike, name: str | None = None) -> Path:
    """`path` resolved (links followed), refused unless it lies strictly inside `root`: the one
    containment check every loader applies to a completed path."""
    root_res = Path(root).resolve()
    target = Path(path).resolve()
    if root_res not in target.parents:
        raise InputError(source, f"file path {name or str(path)!r} escapes the dataset folder {root}")
    return target


def check_output(out: str | os.PathLike, inputs) -> None:
    """Refuse an output that would land on an input, links resolved: an input file itself, or
    anything inside an input folder. A lumen3d run directory among the inputs may receive new files
    (a rendering of the run beside it), never over the files it holds."""
    o = Path(out).resolve()
    for inp in inputs:
        i = Path(inp).resolve()
        if o == i:
            raise InputError(out, f"would overwrite the input {inp}; choose another path")
        if i.is_dir() and i in o.parents:
            if (i / "config.json").is_file() and not o.exists():
                continue
            raise InputError(out, f"would write inside the input {inp}; choose another path")


def read_npz(path: str | os.PathLike, what: str) -> dict:
    """Every array of an .npz (no pickles). A damaged archive fails in many ways inside zipfile,
    zlib and numpy (bad headers, 'encrypted' flags, unknown compression, short data): each is the
    file's fault, so each becomes one line naming it."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:
        raise InputError(path, f"not a readable .npz {what} ({e.__class__.__name__}: {str(e)[:80]})") from None


def load_checkpoint(path: str | os.PathLike, data: bytes | None = None) -> dict:
    """torch.load with weights_only=True (tensors and plain containers only, no code), with a
    one-line InputError for a missing, damaged or unsafe file. `data`: the file's bytes, as another
    process read them (`path` then only names it in messages)."""
    import io

    import torch

    path = Path(path)
    if data is None and not path.is_file():
        raise InputError(path, "checkpoint not found")
    try:
        state = torch.load(path if data is None else io.BytesIO(data), weights_only=True)
    except Exception as e:
        if "Weights only load failed" in str(e):  # torch's refusal of anything but tensors and containers
            raise InputError(path, "not a readable checkpoint: it holds objects other than tensors and plain "
                                   "containers, which could run code when loaded; refused") from None
        reason = (str(e).strip().splitlines() or [""])[0][:160]
        raise InputError(path, f"not a readable checkpoint ({e.__class__.__name__}: {reason})") from None
    if not isinstance(state, dict) or not ("kind" in state or "params" in state):
        raise InputError(path, "not a lumen3d checkpoint (no 'kind')")
    return state


def write_png(img, path: str | os.PathLike) -> None:
    """An (H, W[, C]) uint8 or uint16 image as PNG, written atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")


def write_mp4(path: str | os.PathLike, images, fps: float = 30.0) -> int:
    """H.264 video of (H, W, 3) uint8 images, written atomically; odd sizes are cropped to even
    (4:2:0 needs them). Returns the number of frames."""
    import imageio.v2 as imageio
    import numpy as np

    n = 0
    with atomic_path(path) as tmp:
        with imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", quality=8, macro_block_size=1,
                                ffmpeg_log_level="error") as w:
            for img in images:
                h, w_ = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
                w.append_data(np.ascontiguousarray(img[:h, :w_]))
                n += 1
    return n
