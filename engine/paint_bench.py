"""`lumen3d bench paint`: what Paint-it costs per step with Stable Diffusion 2.1-base's architecture
(random weights: speed does not depend on them), stage by stage, per preset and precision; and the
known answer's quality through the whole command."""
from __future__ import annotations

import time
from pathlib import Path

import torch

STAGES = ("raster", "shading", "network_fwd", "network_bwd", "vae_encode", "unet")


def _best(fn, reps: int, warmup: int = 1) -> float:
    """ms of fn's fastest run after `warmup` runs."""
    times = []
    for _ in range(reps + warmup):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * min(times[warmup:])


def paint_method(mesh: Path, preset: str, dtype: str, parts: dict | None, seed: int = 0):
    """A PaintIt on `mesh` at a preset's settings, its guidance Stable Diffusion's architecture with
    random weights (`parts` from `engine.sds_bench.build`) through the VAE at the CPU's default
    guidance size, or the oracle when `parts` is None."""
    from engine.guidance.stable_diffusion import default_guidance_size
    from engine.jobs.paint import load_subject
    from engine.methods.configs import PaintConfig
    from engine.methods.paint import PaintIt
    from engine.sds_bench import guidance_for

    cfg = PaintConfig(mesh=mesh, prompt="bench", guidance="known-object", preset=preset, seed=seed, view_bank=16,
                      precision="float32" if dtype == "float32" else "bf16").resolved()
    method = PaintIt(cfg, load_subject(cfg))
    if parts is not None:
        dt = torch.float32 if dtype == "float32" else torch.bfloat16
        method.guidance = guidance_for(parts, dt, "vae", default_guidance_size(cfg, "cpu"))
    return method


def stage_times(method, reps: int = 1) -> dict[str, float]:
    """ms per step of each stage at the method's settings (all of a step's views together)."""
    cfg, g, r = method.cfg, method.guidance, method.renderer
    gb, views = method.sample_views()
    out: dict[str, float] = {"raster": _best(lambda: r.gbuffer(views.cameras), reps)}
    maps = {k: v.detach().requires_grad_() for k, v in method.current_maps().items()}

    def shade():
        img = r.shade(gb, "pbr", views.background, method.env, maps=maps).rgb
        img.backward(torch.rand_like(img))
    out["shading"] = _best(shade, reps)
    out["network_fwd"] = _best(method.maps, reps)

    def net_bwd():
        m = method.maps()
        t0 = time.perf_counter()
        sum((v * torch.rand_like(v)).sum() for v in m.values()).backward()
        return time.perf_counter() - t0
    out["network_bwd"] = 1000 * min(net_bwd() for _ in range(reps + 1))
    B, s = len(views.cameras), cfg.render_size

    def encode():
        x = torch.rand(B, s, s, 3, requires_grad=True)
        z = g.encode(x, views)
        z.backward(torch.rand_like(z))
    out["vae_encode"] = _best(encode, reps) if hasattr(g, "vae") else 0.0
    if hasattr(g, "unet"):
        lat = g.guidance_size // 8
        x_t = torch.randn(B, 4, lat, lat)
        t = torch.full((B,), 500, dtype=torch.long)
        out["unet"] = _best(lambda: g.predict_noise(x_t, t, views, 0.5), reps)
    else:
        out["unet"] = 0.0
    return out


STEP_WARMUP = 4  # a whole step settles after a few (oneDNN's primitives, the allocator): 13.5 s, then 8.9 s


def step_time(method, reps: int = 1) -> float:
    """Seconds of one whole training step late in the run, after STEP_WARMUP steps."""
    steps = method.cfg.max_steps
    start = int(0.7 * steps)
    return _best(lambda: method.train_step(start, lambda k: k / steps), reps + 1, STEP_WARMUP) / 1000


def oracle_run(mesh: Path, preset: str, out: Path, seed: int = 0) -> dict:
    """The known answer through the whole command at a preset: held-out lit PSNR, base colour, minutes."""
    from engine.jobs.paint import run_paint
    from engine.methods.configs import PaintConfig

    t0 = time.perf_counter()
    m = run_paint(PaintConfig(mesh=mesh, prompt="", guidance="known-object", preset=preset, seed=seed, out=out,
                              overwrite=True, video_frames=0, snapshot_every=0))
    return {"oracle_psnr": m["test"]["psnr"], "oracle_base_color_psnr": m["base_color_psnr"],
            "oracle_minutes": (time.perf_counter() - t0) / 60, "oracle_steps": m["steps"]}
