"""Prompts per view, and text embeddings computed once per (model, prompt) and kept on disk."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

DIRECTIONS = ("front", "side", "back", "overhead")


@dataclass(frozen=True)
class ViewThresholds:
    """Degrees (threestudio's defaults): front within ±front of azimuth 0, back within ±back of
    180, side in between; overhead above `overhead` elevation, whatever the azimuth."""

    front: float = 45.0
    back: float = 45.0
    overhead: float = 60.0


def view_directions(azimuth: Tensor, elevation: Tensor, th: ViewThresholds = ViewThresholds()) -> list[str]:
    """Which of DIRECTIONS each view (degrees, (B,)) looks from."""
    out = []
    for a, e in zip(azimuth.tolist(), elevation.tolist()):
        a = (a + 180.0) % 360.0 - 180.0  # (−180, 180]
        if e > th.overhead:
            out.append("overhead")
        elif abs(a) <= th.front:
            out.append("front")
        elif abs(a) >= 180.0 - th.back:
            out.append("back")
        else:
            out.append("side")
    return out


def view_prompt(prompt: str, direction: str) -> str:
    """DreamFusion's suffix: "a corgi, side view"."""
    return f"{prompt}, {direction} view"


def cache_dir() -> Path:
    return Path(os.environ.get("LUMEN3D_CACHE", Path.home() / ".cache" / "lumen3d")) / "text_embeddings"


def model_identity(folder: Path) -> str:
    """What identifies a text encoder for the cache: its config and tokenizer files' contents and its
    weights' size and modification time (hashing gigabytes of weights each run would cost more than
    encoding the prompts)."""
    h = hashlib.sha256()
    for sub in ("text_encoder", "tokenizer"):
        for f in sorted((folder / sub).glob("*")):
            if f.is_file():
                st = f.stat()
                h.update(f.name.encode())
                h.update(f.read_bytes() if st.st_size < 4 << 20 else f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


class EmbeddingCache:
    """encode(prompts) → (N, L, D) float32, each prompt looked up on disk first
    (<cache>/text_embeddings/<model>/<sha of prompt>.safetensors) and written there once computed."""

    def __init__(self, identity: str, encode_fn, root: Path | None = None):
        self.dir = (root or cache_dir()) / identity
        self.encode_fn = encode_fn
        self.hits = self.misses = 0

    def path(self, prompt: str) -> Path:
        return self.dir / (hashlib.sha256(prompt.encode()).hexdigest()[:32] + ".safetensors")

    def __call__(self, prompts: list[str]) -> Tensor:
        from safetensors.torch import load_file, save_file

        from engine.io import atomic_path

        out = {}
        todo = []
        for p in dict.fromkeys(prompts):
            f = self.path(p)
            try:
                out[p] = load_file(f)["embedding"]
                self.hits += 1
            except Exception:  # absent, or a damaged file from an old crash: recompute it
                todo.append(p)
        if todo:
            emb = self.encode_fn(todo).float().cpu()
            self.misses += len(todo)
            self.dir.mkdir(parents=True, exist_ok=True)
            for p, e in zip(todo, emb):
                out[p] = e.contiguous()
                with atomic_path(self.path(p)) as tmp:
                    save_file({"embedding": out[p]}, str(tmp), metadata={"prompt": p})
        return torch.stack([out[p] for p in prompts])
