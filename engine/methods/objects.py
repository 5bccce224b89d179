"""Training the object world's networks on the one loop: the built-in diffusion model
(`lumen3d train guidance`) and its judge (`lumen3d train judge`). Both draw fresh renders every
step from the run's seed (about 1,000 a second here, a few per cent of a step), so there is no
dataset on disk and a resumed run continues the same stream."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from engine.guidance.objects.world import Item, held_out_items, shoot, training_items
from engine.training.method import Method

log = logging.getLogger("lumen3d")


class WorldTraining(Method):
    """What both share: the item stream, the optimiser's schedule, bf16 where the CPU has it."""

    def __init__(self, cfg, items: list[Item], device: str = "cpu"):
        from engine.guidance.stable_diffusion import resolve_precision

        self.cfg, self.device, self.items = cfg, device, items
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.dtype = resolve_precision(getattr(cfg, "precision", "auto"), device)

    def draw(self, n: int):
        pick = torch.randint(len(self.items), (n,), generator=self.gen).tolist()
        return shoot([self.items[i] for i in pick], self.gen)

    def autocast(self):
        from engine.guidance.stable_diffusion import autocast

        return autocast(self.device, self.dtype)

    def lr_at(self, step: int, fraction: float) -> float:
        """Linear warm-up, then a cosine to 10% of the rate over the budget (steps or minutes)."""
        warm = getattr(self.cfg, "warmup", 0)
        if step <= warm:
            return self.cfg.lr * step / warm
        return self.cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(fraction, 1.0))))


class GuidanceModelTraining(WorldTraining):
    kind = "guidance"

    def __init__(self, cfg, device: str = "cpu", dataset=None):
        from engine.guidance.objects.diffusion import linear_alphas_cumprod
        from engine.guidance.objects.model import ModelConfig, ObjectsUNet, Tokenizer

        super().__init__(cfg, training_items(cfg.held_out, cfg.seed), device)
        torch.manual_seed(cfg.seed)
        self.model_cfg = ModelConfig(channels=tuple(cfg.channels))
        self.model = ObjectsUNet(self.model_cfg)
        self.ema = ObjectsUNet(self.model_cfg).requires_grad_(False)
        self.ema.load_state_dict(self.model.state_dict())
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=0.01)
        self.tokenizer = Tokenizer()
        self.alphas_cumprod = linear_alphas_cumprod(self.model_cfg.T)
        self.run_dir: Path | None = None

    def train_step(self, step, fraction):
        from engine.guidance.objects.diffusion import loss_weights, noisy

        cfg = self.cfg
        shot = self.draw(cfg.batch)
        captions = shot.captions(self.gen)
        drop = torch.rand(cfg.batch, generator=self.gen) < cfg.caption_dropout
        captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
        x0 = 2 * shot.images - 1
        t = torch.randint(self.model_cfg.T, (cfg.batch,), generator=self.gen)
        noise = torch.randn(x0.shape, generator=self.gen)
        lr = self.lr_at(step, fraction(step))
        for g in self.opt.param_groups:
            g["lr"] = lr
        with self.autocast():
            eps = self.model(noisy(x0, t, noise, self.alphas_cumprod), t, self.tokenizer(captions))
        per = ((eps.float() - noise) ** 2).mean((1, 2, 3))
        loss = (per * loss_weights(t, self.alphas_cumprod, cfg.min_snr)).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        decay = min(cfg.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.model.parameters()):
                e.lerp_(p, 1 - decay)
        return {"loss": loss.detach(), "mse": per.mean().detach(), "grad_norm": grad_norm, "lr": lr}

    def describe(self, s):
        return f"loss {s['loss']:.4f}  mse {s['mse']:.4f}  lr {s['lr']:.2e}"

    def state_dict(self):
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                "generator": self.gen.get_state()}

    def load_state_dict(self, state, source):
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["generator"])

    def meta(self):
        return {"model": self.model_cfg.to_dict()}

    def sample_grid(self, path: Path, seed: int = 0) -> None:
        """One sample per (prompt) of a fixed set: seen and held-out combinations, every kind."""
        from engine.guidance.objects.diffusion import sample
        from engine.guidance.objects.world import KINDS, COLOURS, PATTERNS

        colours, patterns = list(COLOURS), PATTERNS
        prompts = [Item(k, colours[(3 * i) % 10], patterns[i % 4]).caption() for i, k in enumerate(KINDS)]
        held = [i.caption() for i in held_out_items(self.cfg.held_out, self.cfg.seed)[:12]]
        imgs = sample(self.ema, prompts + held, torch.Generator().manual_seed(seed), steps=30, dtype=self.dtype)
        save_grid(imgs, path, 12)

    def after_step(self, step, run, final):
        every = self.cfg.sample_every
        if final or (every and step % every == 0):
            self.sample_grid(run.path("renders", "samples", "final.png" if final else f"step_{step:06d}.png"))

    def export(self, run):
        path = self.write_weights(self.ema, self.model_cfg.to_dict(), run.path("exports", "objects64.safetensors"),
                                  self.cfg.held_out, self.cfg.seed)
        return {"weights": str(path), "bytes": path.stat().st_size}

    @staticmethod
    def write_weights(network, config: dict, path: Path, held_out: int, seed: int) -> Path:
        from engine.guidance.objects.weights import save_network

        return save_network(network, config, path, {"held_out": [list(i.index) for i in held_out_items(held_out, seed)],
                                                    "seed": seed})

    @classmethod
    def export_checkpoint(cls, ckpt, source, fmt, out, options):
        """The EMA weights of a run's last checkpoint (finished or not)."""
        from engine.guidance.objects.model import ModelConfig, ObjectsUNet

        cfg = ModelConfig.from_dict(ckpt["meta"]["model"])
        net = ObjectsUNet(cfg)
        net.load_state_dict(ckpt["state"]["method"]["ema"])
        path = cls.write_weights(net, cfg.to_dict(), Path(out or source / "exports" / "objects64.safetensors"),
                                 int(ckpt["config"]["held_out"]), int(ckpt["config"]["seed"]))
        return f"wrote {path} (the EMA weights at step {ckpt['state']['loop']['step']})"


class JudgeTraining(WorldTraining):
    kind = "judge"

    def __init__(self, cfg, device: str = "cpu", dataset=None):
        from engine.guidance.objects.judge import Judge
        from engine.guidance.objects.world import all_items

        super().__init__(cfg, all_items(), device)
        torch.manual_seed(cfg.seed)
        self.judge = Judge()
        self.opt = torch.optim.AdamW(self.judge.parameters(), lr=cfg.lr, weight_decay=1e-4)

    def train_step(self, step, fraction):
        shot = self.draw(self.cfg.batch)
        x = degrade(shot.images, self.gen)
        target = torch.tensor([i.index for i in shot.items])
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(step, fraction(step))
        self.judge.train()
        with self.autocast():
            logits = self.judge(x)
        loss = sum(F.cross_entropy(logits[k].float(), target[:, j]) for j, k in enumerate(logits))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        acc = torch.stack([logits[k].argmax(1) == target[:, j] for j, k in enumerate(logits)]).all(0).float().mean()
        return {"loss": loss.detach(), "acc": acc}

    def describe(self, s):
        return f"loss {s['loss']:.4f}  batch accuracy {s['acc']:.3f}"

    def state_dict(self):
        return {"judge": self.judge.state_dict(), "opt": self.opt.state_dict(), "generator": self.gen.get_state()}

    def load_state_dict(self, state, source):
        self.judge.load_state_dict(state["judge"])
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["generator"])

    def summary(self, train_seconds):
        """Accuracy on 2,000 fresh renders (new views, every combination)."""
        acc = judge_accuracy(self.judge, torch.Generator().manual_seed(self.cfg.seed + 1), 2000)
        log.info("judge on 2,000 new views: kind %.3f, colour %.3f, pattern %.3f, all three %.3f", acc["kind"],
                 acc["colour"], acc["pattern"], acc["all"])
        return {"held_out_views": acc}

    def export(self, run):
        from engine.guidance.objects.weights import save_network

        path = save_network(self.judge, {}, run.path("exports", "judge.safetensors"))
        return {"weights": str(path), "bytes": path.stat().st_size}

    @classmethod
    def export_checkpoint(cls, ckpt, source, fmt, out, options):
        from engine.guidance.objects.judge import Judge
        from engine.guidance.objects.weights import save_network

        judge = Judge()
        judge.load_state_dict(ckpt["state"]["method"]["judge"])
        path = save_network(judge, {}, Path(out or source / "exports" / "judge.safetensors"))
        return f"wrote {path} (step {ckpt['state']['loop']['step']})"


def degrade(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The judge also sees blurred, noisy renders, as 3D results can be: a Gaussian blur of σ up to 1.2
    pixels and noise of σ up to 0.03, each on half the batch."""
    B = len(images)
    u = torch.rand(B, 4, generator=gen)
    sigma = torch.where(u[:, 0] < 0.5, 1.2 * u[:, 1], torch.zeros(B))
    k = torch.arange(-3, 4, dtype=torch.float32)
    w = torch.exp(-0.5 * (k[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    w = w / w.sum(1, keepdim=True)  # (B, 7); σ → 0 is the identity
    x = images.reshape(1, B * 3, *images.shape[-2:])
    wx = w.repeat_interleave(3, 0)
    x = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="replicate"), wx[:, None, None, :], groups=B * 3)
    x = F.conv2d(F.pad(x, (0, 0, 3, 3), mode="replicate"), wx[:, None, :, None], groups=B * 3)
    x = x.reshape_as(images)
    noise = torch.randn(x.shape, generator=gen) * (0.03 * u[:, 3] * (u[:, 2] < 0.5)).reshape(-1, 1, 1, 1)
    return (x + noise).clamp(0, 1)


@torch.no_grad()
def judge_accuracy(judge, gen: torch.Generator, n: int, items: list[Item] | None = None) -> dict[str, float]:
    """The judge's accuracy on n fresh renders of items (all combinations by default)."""
    from engine.guidance.objects.world import all_items

    items = items or all_items()
    judge.eval()
    hits = torch.zeros(4)
    for start in range(0, n, 250):
        m = min(250, n - start)
        shot = shoot([items[i] for i in torch.randint(len(items), (m,), generator=gen).tolist()], gen)
        names = judge.name(shot.images)
        ok = torch.tensor([[names["kind"][j] == it.kind, names["colour"][j] == it.colour,
                            names["pattern"][j] == it.pattern] for j, it in enumerate(shot.items)])
        hits += torch.cat([ok.float().sum(0), ok.all(1).float().sum()[None]])
    return dict(zip(("kind", "colour", "pattern", "all"), (hits / n).tolist()))


def save_grid(images: torch.Tensor, path: Path, columns: int) -> None:
    """(B, 3, H, W) in [0, 1] as one PNG, `columns` wide, one-pixel white gaps, 2× nearest."""
    from engine.io import write_png

    B, _, H, W = images.shape
    rows = -(-B // columns)
    grid = torch.ones(3, rows * (H + 1) - 1, columns * (W + 1) - 1)
    for i in range(B):
        r, c = divmod(i, columns)
        grid[:, r * (H + 1):r * (H + 1) + H, c * (W + 1):c * (W + 1) + W] = images[i]
    grid = grid.repeat_interleave(2, 1).repeat_interleave(2, 2)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_png((grid.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy(), path)
