"""The shipped diffusion model: a word tokenizer over the object world's vocabulary, a small text
transformer, and a pixel-space UNet that predicts ε at 64×64 with cross-attention to the words.

The UNet works on 2×2 pixel blocks (pixel-unshuffle in, pixel-shuffle out), so its top level is
32×32: four times less arithmetic than a full-resolution top level, which is what lets it train
on a 2-core CPU in the time budget. Levels 32² / 16² / 8² of `channels`, two residual blocks each
way, the time embedding as a scale and shift of every block (plus the pooled caption), and at 16²
and 8² cross-attention from pixels to words (self-attention too at 8²).
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from engine.errors import InputError
from engine.guidance.objects.world import COLOURS, KINDS, PATTERNS

SPECIAL = ("<pad>", "<empty>")
WORDS = ("a", "an", "plain", *COLOURS, *[p for p in PATTERNS if p != "plain"], *KINDS, ",", "front", "side", "back",
         "overhead", "view")
VOCAB = SPECIAL + WORDS
MAX_TOKENS = 8


class Tokenizer:
    """Captions → (B, MAX_TOKENS) word ids (0-padded). The empty caption is one <empty> token (the
    unconditional input of classifier-free guidance). Words outside the vocabulary are refused."""

    def __init__(self):
        self.ids = {w: i for i, w in enumerate(VOCAB)}

    @staticmethod
    def words(text: str) -> list[str]:
        return re.findall(r"[a-z]+|,", text.lower())

    def check(self, text: str) -> None:
        unknown = [w for w in self.words(text) if w not in self.ids]
        if unknown:
            raise InputError(None, f"the built-in guidance model does not know {', '.join(repr(w) for w in unknown)}: "
                                   f"it knows only its small object world — kinds: {', '.join(KINDS)}; colours: "
                                   f"{', '.join(COLOURS)}; patterns: {', '.join(PATTERNS)} (e.g. \"a red striped "
                                   f"mushroom\"). Real prompts need a Stable Diffusion folder: --model PATH")
        if len(self.words(text)) > MAX_TOKENS:
            raise InputError(None, f"the prompt {text!r} is longer than the built-in model's {MAX_TOKENS} words")

    def __call__(self, texts: list[str]) -> Tensor:
        out = torch.zeros(len(texts), MAX_TOKENS, dtype=torch.long)
        for i, t in enumerate(texts):
            self.check(t)
            ids = [self.ids[w] for w in self.words(t)] or [self.ids["<empty>"]]
            out[i, :len(ids)] = torch.tensor(ids)
        return out


@dataclass
class ModelConfig:
    channels: tuple[int, int, int] = (96, 160, 224)
    text_dim: int = 192
    text_layers: int = 2
    heads: int = 4
    T: int = 1000  # DDPM's linear β schedule, 1e-4 … 0.02
    size: int = 64

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "ModelConfig":
        d = dict(d)
        d["channels"] = tuple(d["channels"])
        return ModelConfig(**d)


class TextEncoder(nn.Module):
    """Word ids (B, L) → token features (B, L, D), the padding mask (B, L) and the pooled caption (B, D)."""

    def __init__(self, dim: int, layers: int, heads: int):
        super().__init__()
        self.embed = nn.Embedding(len(VOCAB), dim)
        self.pos = nn.Parameter(torch.randn(MAX_TOKENS, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        pad = ids == 0
        h = self.norm(self.layers(self.embed(ids) + self.pos[: ids.shape[1]], src_key_padding_mask=pad))
        keep = (~pad).float()[..., None]
        return h, pad, (h * keep).sum(1) / keep.sum(1)


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(16, c // 8), c)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.n1, self.c1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb, 2 * cout)
        self.n2, self.c2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.film(emb)[..., None, None].chunk(2, 1)
        h = self.n2(h) * (1 + scale) + shift
        return self.skip(x) + self.c2(F.silu(h))


class Attention(nn.Module):
    """Pixels attend to the caption's words (and to each other with `self_attention`)."""

    def __init__(self, c: int, text_dim: int, heads: int, self_attention: bool):
        super().__init__()
        self.heads = heads
        self.self_attention = self_attention
        if self_attention:
            self.n0, self.qkv, self.o0 = nn.LayerNorm(c), nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.n1, self.q, self.kv, self.o1 = nn.LayerNorm(c), nn.Linear(c, c), nn.Linear(text_dim, 2 * c), nn.Linear(c, c)
        self.n2, self.ff = nn.LayerNorm(c), nn.Sequential(nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c))
        for o in (self.o1, self.ff[2]) + ((self.o0,) if self_attention else ()):
            nn.init.zeros_(o.weight)
            nn.init.zeros_(o.bias)

    def _split(self, t: Tensor) -> Tensor:
        B, N, C = t.shape
        return t.reshape(B, N, self.heads, C // self.heads).transpose(1, 2)

    def _merge(self, t: Tensor) -> Tensor:
        B, H, N, D = t.shape
        return t.transpose(1, 2).reshape(B, N, H * D)

    def forward(self, x: Tensor, text: Tensor, pad: Tensor) -> Tensor:
        B, C, H, W = x.shape
        h = x.flatten(2).transpose(1, 2)
        if self.self_attention:
            q, k, v = self._split_all(self.qkv(self.n0(h)))
            h = h + self.o0(self._merge(_attend(q, k, v)))
        k, v = self.kv(text).chunk(2, -1)
        a = _attend(self._split(self.q(self.n1(h))), self._split(k).to(h.dtype), self._split(v).to(h.dtype),
                    pad[:, None, None, :])
        h = h + self.o1(self._merge(a))
        h = h + self.ff(self.n2(h))
        return h.transpose(1, 2).reshape(B, C, H, W)

    def _split_all(self, qkv: Tensor):
        return [self._split(t) for t in qkv.chunk(3, -1)]


def _attend(q: Tensor, k: Tensor, v: Tensor, pad: Tensor | None = None) -> Tensor:
    """softmax(q·kᵀ/√d)·v with plain matmuls: at 64 pixels and 8 words the CPU's flash attention
    spent 4× longer in its backward pass."""
    w = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if pad is not None:
        w = w.masked_fill(pad, float("-inf"))
    return w.softmax(-1).to(v.dtype) @ v


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([a.cos(), a.sin()], 1)


class Unit(nn.Module):
    """A residual block, then attention to the caption where the level has it."""

    def __init__(self, cin: int, cout: int, emb: int, attention: "Attention | None" = None):
        super().__init__()
        self.res, self.attn = ResBlock(cin, cout, emb), attention

    def forward(self, x: Tensor, emb: Tensor, words: Tensor, pad: Tensor) -> Tensor:
        h = self.res(x, emb)
        return self.attn(h, words, pad) if self.attn is not None else h


class ObjectsUNet(nn.Module):
    """ε̂(x_t, t, caption ids): x_t (B, 3, 64, 64) in the model's [−1, 1] scale, t (B,) int."""

    def __init__(self, cfg: ModelConfig = ModelConfig()):
        super().__init__()
        self.cfg = cfg
        c0, c1, c2 = cfg.channels
        emb = 4 * c0
        self.text = TextEncoder(cfg.text_dim, cfg.text_layers, cfg.heads)
        self.time = nn.Sequential(nn.Linear(c0, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.pooled = nn.Linear(cfg.text_dim, emb)
        self.stem = nn.Conv2d(12, c0, 3, padding=1)
        attn = [lambda c: None, lambda c: Attention(c, cfg.text_dim, cfg.heads, False),
                lambda c: Attention(c, cfg.text_dim, cfg.heads, True)]  # per level: 32², 16², 8²
        U = lambda cin, cout, level: Unit(cin, cout, emb, attn[level](cout))  # noqa: E731
        self.down = nn.ModuleList([nn.ModuleList([U(c0, c0, 0), U(c0, c0, 0)]),
                                   nn.ModuleList([U(c0, c1, 1), U(c1, c1, 1)]),
                                   nn.ModuleList([U(c1, c2, 2), U(c2, c2, 2)])])
        self.mid = nn.ModuleList([U(c2, c2, 2), U(c2, c2, 0)])
        # each up unit takes one skip: the down units' outputs and each level's input, last first
        self.up = nn.ModuleList([nn.ModuleList([U(c2 + c2, c2, 2), U(c2 + c2, c2, 2), U(c2 + c1, c2, 2)]),
                                 nn.ModuleList([U(c2 + c1, c1, 1), U(c1 + c1, c1, 1), U(c1 + c0, c1, 1)]),
                                 nn.ModuleList([U(c1 + c0, c0, 0), U(c0 + c0, c0, 0), U(c0 + c0, c0, 0)])])
        self.out_norm, self.out = _norm(c0), nn.Conv2d(c0, 12, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def encode_text(self, ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.text(ids)

    def forward(self, x: Tensor, t: Tensor, ids: Tensor | None = None, text: tuple | None = None) -> Tensor:
        """ids (B, L) word ids, or `text` = encode_text(ids) computed once (guidance)."""
        words, pad, pooled = text if text is not None else self.encode_text(ids)
        emb = self.time(timestep_embedding(t, self.cfg.channels[0]).to(x.dtype)) + self.pooled(pooled)
        h = self.stem(F.pixel_unshuffle(x, 2))
        skips = []
        for level, units in enumerate(self.down):
            if level > 0:
                h = F.avg_pool2d(h, 2)
            skips.append(h)
            for u in units:
                h = u(h, emb, words, pad)
                skips.append(h)
        for u in self.mid:
            h = u(h, emb, words, pad)
        for level, units in enumerate(self.up):
            if level > 0:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            for u in units:
                h = u(torch.cat([h, skips.pop()], 1), emb, words, pad)
        return F.pixel_shuffle(self.out(F.silu(self.out_norm(h))), 2)


def count_parameters(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
