"""`lumen3d bench text-to-3d`: text to 3D measured against known answers. Prompts of the object
world (half of them combinations the built-in model never saw) are generated in 3D with the
built-in guidance; the judge names kind, colour and pattern in 8 renders of each result from new
angles. The built-in model's own 2D samples are judged too."""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import torch

from engine.guidance.objects.world import Item, all_items, held_out_items

log = logging.getLogger("lumen3d")

VIEWS = 8
ATTRIBUTES = ("kind", "colour", "pattern")


def bench_prompts(seen: int = 10, held: int = 10, held_out: list[Item] | None = None, seed: int = 0
                  ) -> list[tuple[Item, bool]]:
    """(item, held out?) pairs: `held` of the model's held-out combinations and `seen` others, chosen
    so that kinds, colours and patterns are spread over both halves."""
    held_out = held_out if held_out is not None else held_out_items()
    gen = torch.Generator().manual_seed(seed)
    pick_h = [held_out[i] for i in torch.randperm(len(held_out), generator=gen)[:held].tolist()]
    out_set = set(held_out)
    seen_items = [i for i in all_items() if i not in out_set]
    # one seen item per kind first (in a shuffled order), so the seen half covers the kinds
    order = [seen_items[i] for i in torch.randperm(len(seen_items), generator=gen).tolist()]
    pick_s, kinds = [], set()
    for it in order:
        if it.kind not in kinds and len(pick_s) < seen:
            pick_s.append(it)
            kinds.add(it.kind)
    return [(i, False) for i in pick_s] + [(i, True) for i in pick_h]


def judge_views(judge, images: torch.Tensor, item: Item) -> dict[str, float]:
    """Fractions of the views (B, 3, H, W) in which the judge names each attribute, and all three."""
    names = judge.name(images)
    ok = torch.tensor([[names[a][j] == getattr(item, a) for a in ATTRIBUTES] for j in range(len(images))]).float()
    return {**{a: float(ok[:, k].mean()) for k, a in enumerate(ATTRIBUTES)}, "all": float(ok.all(1).float().mean()),
            "named": {a: names[a] for a in ATTRIBUTES}}


def samples_2d(model, judge, prompts: list[tuple[Item, bool]], per_prompt: int, scale: float, steps: int,
               seed: int = 0, dtype=torch.bfloat16) -> tuple[list[dict], torch.Tensor]:
    """The model's own samples for each prompt (the caption without a view), judged."""
    from engine.guidance.objects.diffusion import sample

    gen = torch.Generator().manual_seed(seed)
    out, grids = [], []
    for item, held in prompts:
        imgs = sample(model, [item.caption()] * per_prompt, gen, steps=steps, scale=scale, dtype=dtype)
        out.append({"prompt": item.caption(), "held_out": held, **judge_views(judge, imgs, item)})
        grids.append(imgs)
    return out, torch.cat(grids)


def generate_3d(item: Item, representation: str, out: Path, seed: int, guidance_scale: float | None,
                max_steps: int | None = None, model: Path | None = None):
    """Run `lumen3d generate` on the item's caption with the built-in guidance; returns the trained
    method and the minutes it took."""
    from engine.methods.configs import GenerateConfig
    from engine.registry import GENERATORS
    from engine.runs import start_run
    from engine.training.loop import TrainingLoop

    cfg = GenerateConfig(prompt=item.caption(), representation=representation, seed=seed, out=out,
                         guidance="builtin", model=model, guidance_scale=guidance_scale, max_steps=max_steps, video_frames=0,
                         checkpoint_every=100_000, mesh_resolution=0).resolved()
    cfg.check()
    t = time.perf_counter()
    run = start_run("generate", cfg)
    method = GENERATORS[cfg.kind].method_class()(cfg, device="cpu")
    loop = TrainingLoop(method, cfg, run)
    loop.train()
    return method, (time.perf_counter() - t) / 60


@torch.no_grad()
def judged_renders(method, size: int = 64) -> torch.Tensor:
    """8 views of a result (elevation 20°, azimuths between those of the turntable), rendered at 2×
    and averaged down as the world's renders are: (8, 3, size, size)."""
    import torch.nn.functional as F

    cams = method.orbit(VIEWS, 2 * size, elevation=20.0, offset=180.0 / VIEWS)
    imgs = torch.stack([method.render(cams[i]).rgb.clamp(0, 1).cpu() for i in range(VIEWS)]).permute(0, 3, 1, 2)
    return F.avg_pool2d(imgs, 2)


def bench_3d(judge, prompts: list[tuple[Item, bool]], representation: str, seed: int, guidance_scale: float | None,
             max_steps: int | None = None, model: Path | None = None) -> tuple[list[dict], torch.Tensor]:
    from engine.progress import track

    recs, renders = [], []
    for item, held in track(prompts, f"text to 3D ({representation})"):
        with tempfile.TemporaryDirectory() as tmp:
            method, minutes = generate_3d(item, representation, Path(tmp) / "run", seed, guidance_scale, max_steps,
                                          model)
            imgs = judged_renders(method)
        recs.append({"prompt": item.caption(), "held_out": held, "minutes": minutes, **judge_views(judge, imgs, item)})
        renders.append(imgs)
        log.info("%s %r: all three right in %.0f%% of views (%.1f min)", representation, item.caption(),
                 100 * recs[-1]["all"], minutes)
    return recs, torch.cat(renders)


def summarise(representation: str, recs: list[dict], samples: list[dict] | None) -> dict:
    mean = lambda rs, k: sum(r[k] for r in rs) / max(len(rs), 1)  # noqa: E731
    seen = [r for r in recs if not r["held_out"]]
    held = [r for r in recs if r["held_out"]]
    return {"representation": representation, "prompts": len(recs), "kind_acc": mean(recs, "kind"),
            "colour_acc": mean(recs, "colour"), "pattern_acc": mean(recs, "pattern"), "all_acc": mean(seen, "all"),
            "held_out_all_acc": mean(held, "all"), "every_prompt_all_acc": mean(recs, "all"),
            "minutes_per_prompt": mean(recs, "minutes"),
            "samples_2d_acc": mean([s for s in samples if not s["held_out"]], "all") if samples else None,
            "samples_2d_held_out_acc": mean([s for s in samples if s["held_out"]], "all") if samples else None,
            "per_prompt": recs}
