"""Stable Diffusion guidance from a user's diffusers folder (never a hub name, never a download).

Classifier-free guidance follows diffusers' (and Imagen's) convention: ε̂ = ε_u + s·(ε_c − ε_u),
so s = 1 is the conditional model alone and DreamFusion's ω = 100 is s = 100.

Renders reach the UNet's latents one of three ways: the folder's VAE encoder with gradient (the
render resized to `guidance_size`, latents 1/8 of it), a user-given small VAE (diffusers'
`AutoencoderTiny`, `--vae PATH`), or the latent path (`latent_path=True`), where the guidance takes
four-channel renders as the latents themselves (Latent-NeRF), with no encoder at all. Neither of
`lumen3d generate`'s representations renders four channels yet, so the command offers the first two.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.errors import InputError
from engine.guidance.base import DiffusionGuidance, Views
from engine.guidance.prompts import (DIRECTIONS, EmbeddingCache, ViewThresholds, model_identity, view_directions,
                                     view_prompt)
from engine.guidance.schedule import TimestepSchedule

log = logging.getLogger("lumen3d")

WEIGHTS = {"unet": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
           "vae": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
           "text_encoder": ("model.safetensors", "pytorch_model.bin")}
LATENT_RANGE = 4.0  # the latent path maps a render's [0, 1] to [−4, 4], the span of SD's scaled latents
MISSING_LIBS = ("Stable Diffusion guidance needs diffusers and transformers: "
                "pip install -c constraints.txt -e '.[text]'")


def require_libraries():
    try:
        import diffusers
        import transformers
    except ImportError:
        raise InputError(None, MISSING_LIBS) from None
    # their advice (install accelerate, keep modules in float32) is for loading pipelines, not ours
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
    return diffusers, transformers


def check_folder(folder: Path) -> None:
    """A diffusers Stable Diffusion folder, complete: else one line naming the first missing file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "no such Stable Diffusion folder (diffusers' layout: model_index.json, unet/, vae/, "
                                 "text_encoder/, tokenizer/, scheduler/)")
    need = [folder / "model_index.json", folder / "scheduler" / "scheduler_config.json"]
    for sub, names in WEIGHTS.items():
        need.append(folder / sub / "config.json")
        if not any((folder / sub / n).is_file() for n in names):
            need.append(folder / sub / names[0])
    tok = folder / "tokenizer"
    if not (tok / "tokenizer.json").is_file():
        need += [tok / "vocab.json", tok / "merges.txt"]
    for f in need:
        if not f.is_file():
            raise InputError(f, "missing: the Stable Diffusion folder is incomplete (diffusers' layout)")


def resolve_precision(precision: str, device: str) -> torch.dtype:
    """auto: bfloat16 on CPUs with native bf16 (AMX or AVX-512 BF16), float16 on CUDA, else float32."""
    if precision == "float32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.startswith("cuda"):
        return torch.float16
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def default_guidance_size(cfg, device: str) -> int:
    """--guidance-size, else 512 on CUDA (the model's own) and 256 on a CPU (4× fewer pixels through
    the VAE encoder, which dominates a CPU step at 512)."""
    return cfg.guidance_size or (512 if device.startswith("cuda") else 256)


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def autocast(device: str, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


class StableDiffusionGuidance(DiffusionGuidance):
    """SDS with a Stable Diffusion UNet (ε or v prediction), classifier-free guidance, view-dependent
    prompts and cached text embeddings."""

    name = "stable-diffusion"

    def __init__(self, unet, vae, alphas_cumprod: Tensor, cond: dict[str, Tensor], uncond: Tensor,
                 prediction: str = "epsilon", guidance_scale: float = 100.0, schedule: TimestepSchedule | None = None,
                 weighting: str = "sds", grad_clip: float | None = None, view_dependent: bool = True,
                 thresholds: ViewThresholds = ViewThresholds(), device: str = "cpu",
                 dtype: torch.dtype = torch.float32, guidance_size: int = 512, seed: int = 0):
        """Assembled from loaded parts (see `load`): a UNet, a VAE (None: the latent path), ᾱ_t, the
        prompt's embeddings per view direction and the negative prompt's."""
        super().__init__(alphas_cumprod, schedule or TimestepSchedule(len(alphas_cumprod)), weighting, grad_clip,
                         seed)
        self.device, self.dtype, self.prediction = device, dtype, prediction
        self.unet = _prepare(unet, device, dtype)
        self.vae = _prepare(vae, device, dtype, encoder_only=True) if vae is not None else None
        self.scaling = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0) if vae is not None else 1.0
        self.latent_path = vae is None
        self.channels = 4 if self.latent_path else 3
        self.cond = {d: e.to(device) for d, e in cond.items()}
        self.uncond = uncond.to(device)
        self.guidance_scale, self.guidance_size = guidance_scale, guidance_size
        self.view_dependent, self.thresholds = view_dependent, thresholds
        self.cache_hits = 0

    @classmethod
    def load(cls, folder: Path, prompt: str, negative_prompt: str = "", guidance_scale: float = 100.0,
             schedule_kwargs: dict | None = None, weighting: str = "sds", grad_clip: float | None = None,
             view_dependent: bool = True, thresholds: ViewThresholds = ViewThresholds(), device: str = "cpu",
             precision: str = "auto", guidance_size: int = 512, latent_path: bool = False,
             vae: Path | None = None, seed: int = 0, cache_root: Path | None = None,
             extra_prompts: dict[str, str] | None = None) -> "StableDiffusionGuidance":
        """From a diffusers folder on disk (`local_files_only`: nothing is fetched). extra_prompts:
        {direction: prompt} for views that name their direction (`Views.directions`)."""
        diffusers, _ = require_libraries()
        folder = Path(folder)
        check_folder(folder)
        if not prompt.strip():
            raise InputError(None, "the prompt is empty: say what to generate")
        dtype = resolve_precision(precision, device)
        kw = {"local_files_only": True}
        with _as_input_error(folder):
            sched = diffusers.DDPMScheduler.from_pretrained(folder, subfolder="scheduler", **kw)
            unet = diffusers.UNet2DConditionModel.from_pretrained(folder, subfolder="unet", **kw)
        prediction = sched.config.get("prediction_type", "epsilon")
        if prediction not in ("epsilon", "v_prediction"):
            raise InputError(folder / "scheduler" / "scheduler_config.json",
                             f"prediction_type {prediction!r} is not supported (epsilon or v_prediction)")
        encoder = None
        if not latent_path:
            if vae is not None:  # a small encoder (TAESD) in place of the folder's
                if not (Path(vae) / "config.json").is_file():
                    raise InputError(Path(vae) / "config.json", "missing: --vae wants an AutoencoderTiny folder")
                with _as_input_error(Path(vae)):
                    encoder = diffusers.AutoencoderTiny.from_pretrained(vae, **kw)
            else:
                with _as_input_error(folder):
                    encoder = diffusers.AutoencoderKL.from_pretrained(folder, subfolder="vae", **kw)
        cache = EmbeddingCache(model_identity(folder), lambda p: _encode_text(folder, p), cache_root)
        extra = dict(extra_prompts or {})
        names = list(DIRECTIONS) + list(extra)
        texts = [view_prompt(prompt, d) if view_dependent else prompt for d in DIRECTIONS] + list(extra.values())
        emb = cache(texts + [negative_prompt])
        g = cls(unet, encoder, sched.alphas_cumprod, dict(zip(names, emb[:-1])), emb[-1], prediction,
                guidance_scale, TimestepSchedule(sched.config.num_train_timesteps, **(schedule_kwargs or {})),
                weighting, grad_clip, view_dependent, thresholds, device, dtype, guidance_size, seed)
        g.cache_hits = cache.hits
        log.info("guidance: %s (%s, %s), CFG %g, %s", folder, dtype, prediction, guidance_scale,
                 "latent path" if latent_path else f"VAE encoder at {guidance_size}² ({'tiny' if vae else 'full'})")
        return g

    @classmethod
    def from_config(cls, cfg, device: str = "cpu", extra_prompts: dict[str, str] | None = None
                    ) -> "StableDiffusionGuidance":
        return cls.load(cfg.model, cfg.prompt, cfg.negative_prompt, cfg.guidance_scale,
                        {"t_range": tuple(cfg.t_range), "anneal": cfg.t_anneal, "t_final": tuple(cfg.t_final)},
                        cfg.weighting, cfg.grad_clip, cfg.view_dependent,
                        ViewThresholds(cfg.front_threshold, cfg.back_threshold, cfg.overhead_threshold), device,
                        cfg.precision, default_guidance_size(cfg, device), False, cfg.vae, cfg.seed,
                        extra_prompts=extra_prompts)

    # ------------------------------------------------------------------ SDS parts
    def encode(self, images: Tensor, views: Views) -> Tensor:
        x = images.permute(0, 3, 1, 2)
        if self.latent_path:
            size = self.guidance_size // 8
            if x.shape[-2:] != (size, size):
                x = F.interpolate(x, (size, size), mode="bilinear", align_corners=False)
            return LATENT_RANGE * (2 * x - 1)
        if x.shape[-2:] != (self.guidance_size, self.guidance_size):
            x = F.interpolate(x, (self.guidance_size, self.guidance_size), mode="bilinear", align_corners=False)
        x = (2 * x - 1).contiguous(memory_format=torch.channels_last)
        x = x.to(self.dtype) if self.dtype != torch.float32 else x
        # on a CPU one image at a time: the encoder's activations then stay in cache (forward and
        # backward of 4 views at 256² took 3.5 s this way and 4.7 s as one batch, bf16, 2 threads)
        chunks = x.split(1) if not self.device.startswith("cuda") else [x]
        with autocast(self.device, self.dtype):
            encs = [self.vae.encode(c) for c in chunks]
        if hasattr(encs[0], "latent_dist"):
            # the mean plus the posterior's noise, drawn from the guidance's own generator
            mean = torch.cat([e.latent_dist.mean for e in encs])
            std = torch.cat([e.latent_dist.std for e in encs])
            z = mean + std * torch.randn(mean.shape, generator=self.generator).to(mean)
        else:
            z = torch.cat([e.latents for e in encs])
        return z.float() * self.scaling

    def text_embeddings(self, views: Views) -> tuple[Tensor, Tensor]:
        """(cond, uncond) (B, L, D) for the views."""
        dirs = view_directions(views.azimuth, views.elevation, self.thresholds) if self.view_dependent \
            else ["front"] * len(views.azimuth)
        if views.directions is not None:  # a view that names its own prompt keeps it
            dirs = [d if g is None else g for g, d in zip(views.directions, dirs)]
        cond = torch.stack([self.cond[d] for d in dirs])
        return cond, self.uncond.expand_as(cond)

    @torch.no_grad()
    def predict_noise(self, x_t: Tensor, t: Tensor, views: Views, progress: float) -> Tensor:
        cond, uncond = self.text_embeddings(views)
        x_in = torch.cat([x_t, x_t]).to(self.dtype).contiguous(memory_format=torch.channels_last)
        t_in = torch.cat([t, t]).to(x_t.device)
        with autocast(self.device, self.dtype):
            out = self.unet(x_in, t_in, encoder_hidden_states=torch.cat([cond, uncond]).to(self.dtype)).sample.float()
        if self.prediction == "v_prediction":  # ε = √ᾱ·v + √(1 − ᾱ)·x_t
            a = self.alphas_cumprod[t_in.cpu()].float().to(x_t.device).reshape(-1, 1, 1, 1)
            out = a.sqrt() * out + (1 - a).sqrt() * torch.cat([x_t, x_t]).float()
        e_c, e_u = out.chunk(2)
        return e_u + self.guidance_scale * (e_c - e_u)


def _encode_text(folder: Path, prompts: list[str]) -> Tensor:
    """CLIP text embeddings (N, 77, D) of the folder's tokenizer and text encoder (loaded only when
    the cache lacks a prompt)."""
    _, transformers = require_libraries()
    kw = {"local_files_only": True}
    with _as_input_error(folder):
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, subfolder="tokenizer", **kw)
        encoder = transformers.CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", **kw)
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        return encoder(ids)[0]


def _prepare(module, device: str, dtype: torch.dtype, encoder_only: bool = False):
    """Frozen, in the guidance's precision, channels-last (oneDNN's and cuDNN's fast layout). A VAE
    keeps only its encoder."""
    if encoder_only and hasattr(module, "decoder"):
        module.decoder = None
    module.requires_grad_(False).eval()
    return module.to(device=device, dtype=dtype, memory_format=torch.channels_last)


@contextlib.contextmanager
def _as_input_error(folder: Path):
    """What diffusers and transformers raise on a damaged folder, as one line naming it."""
    try:
        yield
    except InputError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, EnvironmentError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise InputError(folder, f"cannot load the model ({first[:200]})") from None
