"""`lumen3d bench sds`: what text to 3D costs with Stable Diffusion-sized models, and whether the
known-object guidance's answer is recovered.

Timings do not depend on the weights, so the published architectures are built here with random
weights from their configs (SD 1.5 and SD 2.1-base: UNet, VAE, text encoder; the JSON facts
below), and timed on this machine in float32 and bf16."""
from __future__ import annotations

import time

import torch

UNET_COMMON = {"act_fn": "silu", "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False,
               "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], "downsample_padding": 1,
               "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
               "mid_block_scale_factor": 1, "norm_eps": 1e-5, "norm_num_groups": 32, "out_channels": 4,
               "sample_size": 64, "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3}
VAE = {"act_fn": "silu", "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
       "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
       "sample_size": 512, "up_block_types": ["UpDecoderBlock2D"] * 4, "scaling_factor": 0.18215}
ARCHS = {
    # runwayml/stable-diffusion-v1-5: CLIP ViT-L/14's text tower
    "sd15": {"unet": {**UNET_COMMON, "attention_head_dim": 8, "cross_attention_dim": 768},
             "text": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                      "num_hidden_layers": 12, "hidden_act": "quick_gelu", "projection_dim": 768}},
    # stabilityai/stable-diffusion-2-1-base: OpenCLIP ViT-H's text tower, linear attention projections
    "sd21-base": {"unet": {**UNET_COMMON, "attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": 1024,
                           "use_linear_projection": True},
                  "text": {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                           "num_hidden_layers": 23, "hidden_act": "gelu", "projection_dim": 512}},
}


def build(arch: str, seed: int = 0) -> dict:
    """Random-weight UNet, VAE and text encoder of a published architecture, with the parameter counts."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    a = ARCHS[arch]
    unet = UNet2DConditionModel(**a["unet"])
    vae = AutoencoderKL(**VAE)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, **a["text"]))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {"unet": unet, "vae": vae, "text": text, "text_dim": a["unet"]["cross_attention_dim"],
            "params": {"unet": count(unet), "vae": count(vae), "text": count(text)}}


PATHS = {  # label: (how renders reach the latents, render side)
    "vae-512": ("vae", 512), "vae-256": ("vae", 256), "tiny-vae-512": ("tiny", 512), "tiny-vae-256": ("tiny", 256),
    "latent-64": ("latent", 512)}


def guidance_for(parts: dict, dtype: torch.dtype, path: str, size: int):
    """A StableDiffusionGuidance over the random parts: path 'vae' (the model's encoder at size²),
    'tiny' (diffusers' AutoencoderTiny at its default, TAESD's, configuration) or 'latent'."""
    import copy

    from diffusers import AutoencoderTiny

    from engine.guidance.prompts import DIRECTIONS
    from engine.guidance.schedule import scaled_linear_alphas_cumprod
    from engine.guidance.stable_diffusion import StableDiffusionGuidance

    emb = torch.randn(5, 77, parts["text_dim"]) * 0.5
    torch.manual_seed(0)
    vae = copy.deepcopy(parts["vae"]) if path == "vae" else AutoencoderTiny() if path == "tiny" else None
    return StableDiffusionGuidance(copy.deepcopy(parts["unet"]), vae, scaled_linear_alphas_cumprod(),
                                   dict(zip(DIRECTIONS, emb[:4])), emb[4], dtype=dtype, guidance_size=size)


def time_guidance(g, reps: int = 2) -> float:
    """ms of one guidance step (CFG batch 2) on one render, backward to the render included."""
    from engine.cameras import sample_orbit_cameras
    from engine.guidance import Views

    size = g.guidance_size if not g.latent_path else g.guidance_size // 8
    cams, az, el = sample_orbit_cameras(1, size, size, torch.Generator().manual_seed(0))
    views = Views(cams, az, el, None)
    times = []
    for _ in range(reps + 1):  # the first warms oneDNN's kernels up
        x = torch.rand(1, size, size, g.channels, requires_grad=True)
        t0 = time.perf_counter()
        g(x, views, 0.5).loss.backward()
        times.append(time.perf_counter() - t0)
    return 1000 * min(times[1:])


def time_generation_step(representation: str, guidance, reps: int = 3) -> float:
    """ms of one full generation step (render, guidance, backward, optimiser) at the defaults, late in the
    run (full render size, shading on), after a first step (a fresh scene, the NeRF's grid measured)."""
    from engine.methods.configs import GenerateConfig
    from engine.registry import GENERATORS

    cfg = GenerateConfig(prompt="bench", guidance="known-object", representation=representation).resolved()
    method = GENERATORS[cfg.kind].method_class()(cfg, device="cpu")
    method.prepare()
    method.guidance = guidance
    times = []
    step = int(0.7 * cfg.max_steps)
    fraction = lambda s: s / cfg.max_steps  # noqa: E731
    method.train_step(1, fraction)  # the first step measures the NeRF's occupancy grid (the blob)
    for k in range(reps + 1):
        t0 = time.perf_counter()
        method.train_step(step + k, fraction)
        times.append(time.perf_counter() - t0)
    return 1000 * min(times[1:])


ORACLE = {  # the known-answer runs of tests/test_generate.py
    "gaussians": {"max_steps": 200, "batch": 2, "render_size": 128},
    "nerf": {"max_steps": 300, "batch": 2, "shading_start": 1.0},
}

