"""The built-in guidance: SDS with the shipped object-world diffusion model, the default of
`lumen3d generate` and `lumen3d paint` when no --model is given. It knows only the object world's
words ("a red striped mushroom"); anything else is refused with the list of what it knows.

Renders are resized to the model's 64×64 and taken to its [−1, 1] pixel space (no encoder), the
prompt gets the world's view suffix (", front view") only for kinds that have a front, and
classifier-free guidance is against the negative prompt or the empty caption.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.errors import InputError
from engine.guidance.base import DiffusionGuidance, Views
from engine.guidance.objects.diffusion import linear_alphas_cumprod
from engine.guidance.objects.model import ModelConfig, ObjectsUNet, Tokenizer
from engine.guidance.objects.weights import MODEL_FILE, read_network
from engine.guidance.objects.world import FRONTED
from engine.guidance.prompts import DIRECTIONS, ViewThresholds, view_directions, view_prompt
from engine.guidance.schedule import TimestepSchedule

log = logging.getLogger("lumen3d")


@lru_cache(maxsize=2)
def load_model(path: Path = MODEL_FILE) -> tuple[ObjectsUNet, dict]:
    """The shipped (or a `lumen3d train guidance` run's) model, frozen, and its file's notes."""
    config, state, notes = read_network(path)
    try:
        model = ObjectsUNet(ModelConfig.from_dict(config))
        model.load_state_dict(state)
    except (TypeError, KeyError, RuntimeError, ValueError) as e:
        raise InputError(path, f"weights do not fit the built-in model ({str(e).splitlines()[0][:120]})") from None
    return model.requires_grad_(False).eval(), notes


def check_prompt(prompt: str) -> None:
    """Refuse, in one line, a prompt the built-in model cannot read."""
    if not prompt.strip():
        raise InputError(None, "the prompt is empty: say what to generate, e.g. \"a red striped mushroom\"")
    Tokenizer().check(prompt)


def world_prompt(prompt: str, direction: str) -> str:
    """The caption the model learned for a view: the view's suffix only where the kind has a front."""
    words = Tokenizer.words(prompt)
    if direction in DIRECTIONS and any(k in words for k in FRONTED) and "view" not in words:
        return view_prompt(prompt, direction)
    return prompt


class ObjectsGuidance(DiffusionGuidance):
    name = "builtin"

    def __init__(self, model: ObjectsUNet, prompt: str, negative_prompt: str = "", guidance_scale: float = 20.0,
                 schedule: TimestepSchedule | None = None, weighting: str = "sds", grad_clip: float | None = None,
                 view_dependent: bool = True, thresholds: ViewThresholds = ViewThresholds(),
                 dtype: torch.dtype = torch.float32, seed: int = 0, extra_prompts: dict[str, str] | None = None):
        ac = linear_alphas_cumprod(model.cfg.T)
        super().__init__(ac, schedule or TimestepSchedule(len(ac)), weighting, grad_clip, seed)
        check_prompt(prompt)
        if negative_prompt:
            Tokenizer().check(negative_prompt)
        self.model, self.dtype, self.guidance_scale = model, dtype, guidance_scale
        self.view_dependent, self.thresholds = view_dependent, thresholds
        self.guidance_size = model.cfg.size
        texts = {d: world_prompt(prompt, d) if view_dependent else prompt for d in DIRECTIONS}
        for name, text in (extra_prompts or {}).items():
            try:
                Tokenizer().check(text)
                texts[name] = text
            except InputError:  # e.g. Paint-it's "the face of …": the model has no words for it
                log.info("guidance: the built-in model cannot read %r; that view uses the prompt", text)
                texts[name] = prompt
        self.names = list(texts)
        tok = Tokenizer()
        with torch.no_grad():
            self.text = model.encode_text(tok(list(texts.values())))
            self.uncond = model.encode_text(tok([negative_prompt]))
        self.prompts = texts

    @classmethod
    def from_config(cls, cfg, device: str = "cpu", extra_prompts: dict[str, str] | None = None) -> "ObjectsGuidance":
        from engine.guidance.stable_diffusion import resolve_precision

        if device != "cpu":
            raise InputError(None, "the built-in guidance runs on the CPU (use --device cpu)")
        model, _ = load_model(Path(cfg.model) if cfg.model is not None else MODEL_FILE)
        dtype = resolve_precision(cfg.precision, device)
        g = cls(model, cfg.prompt, cfg.negative_prompt, cfg.guidance_scale,
                TimestepSchedule(model.cfg.T, tuple(cfg.t_range), cfg.t_anneal, tuple(cfg.t_final)), cfg.weighting,
                cfg.grad_clip, cfg.view_dependent,
                ViewThresholds(cfg.front_threshold, cfg.back_threshold, cfg.overhead_threshold), dtype, cfg.seed,
                extra_prompts)
        log.info("guidance: the built-in object-world model (%s, 64², %s), CFG %g", cfg.model or "shipped", dtype,
                 cfg.guidance_scale)
        return g

    def encode(self, images: Tensor, views: Views) -> Tensor:
        x = images.permute(0, 3, 1, 2)
        S = self.guidance_size
        if x.shape[-2:] != (S, S):
            x = F.interpolate(x, (S, S), mode="bilinear", antialias=True, align_corners=False)
        return 2 * x - 1

    def text_embeddings(self, views: Views) -> tuple:
        dirs = view_directions(views.azimuth, views.elevation, self.thresholds)
        if views.directions is not None:
            dirs = [d if g is None else g for g, d in zip(views.directions, dirs)]
        idx = torch.tensor([self.names.index(d) for d in dirs])
        B = len(idx)
        cond = [t[idx] for t in self.text]
        uncond = [t.expand(B, *t.shape[1:]) for t in self.uncond]
        return tuple(torch.cat([c, u]) for c, u in zip(cond, uncond))

    @torch.no_grad()
    def predict_noise(self, x_t: Tensor, t: Tensor, views: Views, progress: float) -> Tensor:
        from engine.guidance.stable_diffusion import autocast

        text = self.text_embeddings(views)
        with autocast("cpu", self.dtype):
            out = self.model(torch.cat([x_t, x_t]).cpu(), torch.cat([t, t]).cpu(), text=text).float()
        e_c, e_u = out.chunk(2)
        return (e_u + self.guidance_scale * (e_c - e_u)).to(x_t.device)
