"""`lumen3d generate "a prompt"`: text to 3D on the one training loop."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError
from engine.methods.configs import GenerateConfig

log = logging.getLogger("lumen3d")


@dataclass(kw_only=True)
class GenerateJob(GenerateConfig):
    """Generate a 3D scene from a text prompt with a Stable Diffusion folder (--model): Gaussians
    (DreamGaussian) or NeRF (DreamFusion)."""

    def run(self) -> dict:
        return run_generation(self)


def run_generation(cfg: GenerateConfig) -> dict:
    """A new run directory (or the one to --resume) with config, log, checkpoints, metrics, the
    turntable video and the exports."""
    from engine.registry import GENERATORS
    from engine.guidance import check_guidance_inputs
    from engine.runs import resolve_device, start_run
    from engine.training.loop import TrainingLoop

    cfg = cfg.resolved()
    cfg.check()
    check_guidance_inputs(cfg)
    if resolve_device(cfg.device) == "cuda":
        raise InputError(None, "generation on CUDA waits for the CUDA kernels to be verified on a GPU; use --device cpu")
    inputs = [Path(p) for p in (cfg.model, cfg.vae) if p is not None]
    run = start_run("generate", cfg, inputs=inputs, resume=cfg.resume)
    log.info("generating %r as %s (%d steps of %d view%s)", cfg.prompt, cfg.representation, cfg.max_steps, cfg.batch,
             "s" if cfg.batch > 1 else "")
    method = GENERATORS[cfg.kind].method_class()(cfg, device="cpu")
    loop = TrainingLoop(method, cfg, run)
    loop.resume()
    loop.train()
    return loop.finish()
