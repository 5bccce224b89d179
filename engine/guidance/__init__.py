"""Guidance: what tells a text-to-3D method how its renders should change. A `Guidance` takes a
batch of renders, the views they were rendered from and the run's progress, and returns a loss
whose gradient on the renders is the Score Distillation Sampling gradient (DreamFusion).

Parts: `schedule` (timesteps, weightings, the SDS loss form), `prompts` (view-dependent prompts
and the on-disk cache of text embeddings), `stable_diffusion` (a user's diffusers folder),
`objects` (the built-in model of a small object world, shipped, the default without --model),
`known_object` (the optimal denoiser of a known object's renders: a guidance whose answer is
known, for tests and benchmarks). `build_guidance` picks one from a generation config.
"""
from __future__ import annotations

from engine.guidance.base import Guidance, GuidanceOutput, Views

__all__ = ["Guidance", "GuidanceOutput", "Views", "build_guidance", "check_guidance_inputs"]


def build_guidance(cfg, device: str = "cpu", extra_prompts: dict[str, str] | None = None) -> Guidance:
    """The guidance a `engine.methods.configs.GenerateConfig` asks for (extra_prompts: see
    `StableDiffusionGuidance.load`)."""
    from engine.errors import InputError

    kind = cfg.guidance_kind()
    if kind == "known-object":
        from engine.guidance.known_object import KnownObjectGuidance

        return KnownObjectGuidance.from_config(cfg, device)
    if kind == "builtin":
        from engine.guidance.objects.guidance import ObjectsGuidance

        return ObjectsGuidance.from_config(cfg, device, extra_prompts)
    if cfg.model is None:
        raise InputError(None, "no guidance model: pass --model PATH, a Stable Diffusion folder in diffusers' layout "
                               "(model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)")
    from engine.guidance.stable_diffusion import StableDiffusionGuidance

    return StableDiffusionGuidance.from_config(cfg, device, extra_prompts)


def check_guidance_inputs(cfg) -> None:
    """Refuse a missing or incomplete model folder, missing libraries, a missing small VAE or a prompt
    the built-in model cannot read in one line, before a job makes a run directory for nothing."""
    from pathlib import Path

    from engine.errors import InputError

    kind = cfg.guidance_kind()
    if kind == "builtin":
        from engine.guidance.objects.guidance import check_prompt, load_model
        from engine.guidance.objects.weights import MODEL_FILE

        if cfg.model is not None and not Path(cfg.model).is_file():
            raise InputError(cfg.model, "no such --model: a Stable Diffusion folder, or the weights file of a "
                                        "`lumen3d train guidance` run")
        load_model(Path(cfg.model) if cfg.model is not None else MODEL_FILE)
        check_prompt(cfg.prompt)
        if cfg.negative_prompt:
            check_prompt(cfg.negative_prompt)
    if kind == "stable-diffusion":
        from engine.guidance.stable_diffusion import check_folder, require_libraries

        check_folder(cfg.model)
        require_libraries()
    if cfg.vae is not None and not Path(cfg.vae).is_dir():
        raise InputError(cfg.vae, "no such AutoencoderTiny folder")
