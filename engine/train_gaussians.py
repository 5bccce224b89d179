"""3D Gaussian Splatting training: the Inria recipe on our kernels, with ADC or MCMC
densification, checkpoints that survive SIGKILL, evaluation on the standard split, test
renders, depth maps, a camera-path video and PLY/.splat exports."""
from __future__ import annotations

import logging
import math
import os
import resource
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
import tyro

from engine.errors import InputError
from engine.runs import RunOptions

log = logging.getLogger("lumen3d")


@dataclass(kw_only=True)
class GaussianTrainOptions:
    data: tyro.conf.Positional[Path]
    """Dataset: Blender, nerfstudio (e.g. a `lumen3d sfm` run), COLMAP or LLFF."""
    format: Literal["auto", "blender", "nerfstudio", "colmap", "llff"] = "auto"
    downscale: Optional[float] = None
    """Image downscale factor (LLFF: relative to the full-resolution photos)."""
    max_steps: int = 3000
    max_minutes: Optional[float] = None
    """Stop training after this many minutes (evaluation and exports still run)."""
    strategy: Literal["adc", "mcmc"] = "adc"
    """Densification: Inria adaptive density control, or MCMC relocation."""
    sh_degree: int = 3
    sh_degree_interval: int = 1000
    ssim_lambda: float = 0.2
    background: Optional[tuple[float, float, float]] = None
    """Background colour (default: white for Blender scenes, black otherwise)."""
    random_background: bool = False
    """Composite RGBA targets on a random colour each step (needs images with alpha)."""
    init: Literal["auto", "points", "sfm", "hull", "frustum", "box"] = "auto"
    """Starting Gaussians: the dataset's SfM points; points triangulated from its poses (sfm); random
    points inside the photos' silhouettes (hull, RGBA photos); between LLFF's near/far bounds
    (frustum); or in a box around the focus. auto: points, else hull for RGBA photos, else sfm."""
    init_points: int = 100_000
    """Random initial Gaussians (hull, frustum, box)."""
    init_opacity: float = 0.1
    lr_means: float = 1.6e-4
    lr_means_final: float = 1.6e-6
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacity: float = 5e-2
    lr_sh: float = 2.5e-3
    antialiased: bool = False
    """Mip-Splatting opacity compensation."""
    refine_start: int = 500
    refine_stop: Optional[int] = None
    """Last densification step (default: half of --max-steps)."""
    refine_every: int = 100
    reset_every: int = 3000
    grad_threshold: float = 0.0002
    cap_max: int = 300_000
    """MCMC: most Gaussians."""
    checkpoint_every: int = 500
    resume: bool = False
    """Continue from the run directory's last checkpoint."""
    eval_views: Optional[int] = None
    """Evaluate on this many test views (evenly spaced; default all)."""
    video_frames: int = 90
    kill_at_step: Optional[int] = None
    """Testing aid: SIGKILL this process when it reaches this step, as a crash would."""
    live_view: Literal["off", "png", "window"] = "off"
    """Show the scene while it trains: rendered to <run>/renders/live.png, or in a window."""
    live_every: float = 10.0
    """Seconds between live-view updates (training only pays for a copy of the Gaussians)."""


@dataclass(kw_only=True)
class TrainGaussiansJob(GaussianTrainOptions, RunOptions):
    """Train a 3D Gaussian Splatting scene from posed photos."""

    def run(self):
        from engine.runs import start_run

        if not self.data.exists():  # before a run directory is made for nothing
            raise InputError(self.data, "dataset not found")
        run = start_run("train-gaussians", self, inputs=[self.data], resume=self.resume)
        return train(self, run)


def focus_point(c2ws: np.ndarray) -> np.ndarray:
    """The point closest (least squares) to every camera's optical axis."""
    A, b = np.zeros((3, 3)), np.zeros(3)
    for m in c2ws:
        d = m[:3, 2] / np.linalg.norm(m[:3, 2])
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ m[:3, 3]
    return np.linalg.lstsq(A, b, rcond=None)[0]


def camera_path(c2ws: np.ndarray, n: int) -> np.ndarray:
    """A video path: an orbit around the focus point for object-centric captures, a small
    spiral in front of the mean camera for forward-facing ones. (n, 4, 4) OpenCV c2w."""
    from engine.data.cameras import look_at

    focus = focus_point(c2ws)
    fwd = c2ws[:, :3, 2]
    up = -c2ws[:, :3, 1].mean(0)
    up /= np.linalg.norm(up)
    spread = np.degrees(np.arccos(np.clip(fwd @ (fwd.mean(0) / np.linalg.norm(fwd.mean(0))), -1, 1))).max()
    centres = c2ws[:, :3, 3]
    out = []
    if spread > 45:  # cameras around the object
        rel = centres - focus
        height = float((rel @ up).mean())
        radius = float(np.linalg.norm(rel - np.outer(rel @ up, up), axis=1).mean())
        e1 = rel[0] - (rel[0] @ up) * up
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(up, e1)
        for t in np.linspace(0, 2 * np.pi, n, endpoint=False):
            eye = focus + up * height + radius * (np.cos(t) * e1 + np.sin(t) * e2)
            out.append(look_at(eye, focus, up))
    else:  # forward-facing: circle in the mean image plane
        mean = centres.mean(0)
        r = 0.5 * np.linalg.norm(centres - mean, axis=1).mean()
        ax = c2ws[0, :3, 0]
        ay = c2ws[0, :3, 1]
        for t in np.linspace(0, 2 * np.pi, n, endpoint=False):
            eye = mean + r * (np.cos(t) * ax + np.sin(t) * ay)
            out.append(look_at(eye, focus, up))
    return np.stack(out)


def _viewmat(c2w: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.linalg.inv(c2w)).float()


def _K(intr) -> torch.Tensor:
    return torch.from_numpy(intr.K).float()


class Trainer:
    def __init__(self, cfg: TrainGaussiansJob, run):
        from engine.data import load_scene
        from engine.strategies import ADCStrategy, MCMCStrategy

        self.cfg, self.run = cfg, run
        self.live = None  # viewer.live.LivePreview when --live-view is on
        self.gen = torch.Generator().manual_seed(cfg.seed)
        scene = load_scene(cfg.data, cfg.format, cfg.downscale)
        bg = cfg.background or ((1.0, 1.0, 1.0) if scene.format == "blender" else (0.0, 0.0, 0.0))
        scene.background = tuple(bg)
        self.scene = scene
        self.bg = torch.tensor(bg, dtype=torch.float32)
        self.train_idx = scene.splits["train"]
        self.test_idx = scene.splits.get("test", [])
        if not self.train_idx:
            raise InputError(cfg.data, "the dataset has no training images")
        from engine.progress import track

        self.images = [torch.from_numpy(scene.image_rgba(i)) for i in track(self.train_idx, "loading images")]
        if cfg.random_background and self.images[0].shape[-1] != 4:
            raise InputError(cfg.data, "--random-background needs images with an alpha channel")
        c2ws = np.stack([scene.frames[i].c2w for i in self.train_idx])
        centres = c2ws[:, :3, 3]
        self.extent = 1.1 * float(np.linalg.norm(centres - centres.mean(0), axis=1).max())
        self.init_info: dict = {}
        self.params, init = self.initial_gaussians(c2ws)
        self.init_info["from"] = init
        log.info("%s: %d train / %d test views at %dx%d, extent %.3f, init from %s", scene.root, len(self.train_idx),
                 len(self.test_idx), scene.frames[self.train_idx[0]].intrinsics.width,
                 scene.frames[self.train_idx[0]].intrinsics.height, self.extent, init)
        lrs = {"means": cfg.lr_means * self.extent, "log_scales": cfg.lr_scales, "quats": cfg.lr_quats,
               "opacity_logits": cfg.lr_opacity, "sh_dc": cfg.lr_sh, "sh_rest": cfg.lr_sh / 20}
        self.optimizers = {k: torch.optim.Adam([p], lr=lrs[k], eps=1e-15) for k, p in self.params.items()}
        refine_stop = cfg.refine_stop if cfg.refine_stop is not None else cfg.max_steps // 2
        if cfg.strategy == "adc":
            self.strategy = ADCStrategy(grad_threshold=cfg.grad_threshold, refine_start=cfg.refine_start,
                                        refine_stop=refine_stop, refine_every=cfg.refine_every,
                                        reset_every=cfg.reset_every)
        else:
            self.strategy = MCMCStrategy(cap_max=cfg.cap_max, refine_start=cfg.refine_start, refine_stop=refine_stop,
                                         refine_every=cfg.refine_every)
        self.step = 0
        self.train_seconds = 0.0
        self.order: list[int] = []

    def initial_gaussians(self, c2ws: np.ndarray) -> tuple[dict, str]:
        """The starting Gaussians (see --init) and a line saying where they came from."""
        from scenes import gaussians as G

        cfg, scene = self.cfg, self.scene
        focus = focus_point(c2ws)
        r = 0.35 * float(np.linalg.norm(c2ws[:, :3, 3] - focus, axis=1).mean())
        has_points = scene.points is not None and len(scene.points) > 0
        init = cfg.init
        if init == "auto":
            init = "points" if has_points else "hull" if self.images[0].shape[-1] == 4 else "sfm"
        if init == "points" and not has_points:
            raise InputError(cfg.data, "--init points: the dataset has no SfM points")
        if init == "points":
            rgb = torch.from_numpy(scene.point_colors).float() / 255 if scene.point_colors is not None \
                else torch.full((len(scene.points), 3), 0.5)
            return (G.from_points(torch.from_numpy(scene.points).float(), rgb, cfg.sh_degree, cfg.init_opacity),
                    f"{len(scene.points)} SfM points of the dataset")
        if init == "sfm":
            from engine.sfm import triangulate_known_poses

            xyz, rgb, info = triangulate_known_poses(scene)
            self.init_info = info
            if len(xyz) >= 100:
                err = info["mean_reprojection_error_px"]
                xyz, rgb = torch.from_numpy(xyz).float(), torch.from_numpy(rgb).float() / 255
                how = f"{len(xyz)} points triangulated from the dataset's poses ({err:.2f} px)"
                if scene.near_far is not None and len(xyz) < cfg.init_points:
                    # a few thousand points leave MCMC, which only grows by a few percent per
                    # refinement, far below its cap in a short budget: fill up from the frusta
                    fxyz, frgb = self.frustum_points(cfg.init_points - len(xyz))
                    xyz, rgb = torch.cat([xyz, fxyz]), torch.cat([rgb, frgb])
                    how += f" and {len(fxyz)} between the views' near and far bounds"
                return G.from_points(xyz, rgb, cfg.sh_degree, cfg.init_opacity), how
            log.warning("triangulation found only %d points: starting from random points instead", len(xyz))
            init = "frustum" if scene.near_far is not None else "box"
        if init == "hull":
            if self.images[0].shape[-1] != 4:
                raise InputError(cfg.data, "--init hull needs photos with an alpha channel")
            xyz, rgb = self.hull_points(cfg.init_points, focus - r, focus + r)
            if len(xyz) >= cfg.init_points // 10:
                return (G.from_points(xyz, rgb, cfg.sh_degree, cfg.init_opacity),
                        f"{len(xyz)} points inside the training views' silhouettes")
            log.warning("the silhouettes leave only %d points: starting from random points instead", len(xyz))
            init = "box"
        if init == "frustum":
            if scene.near_far is None:
                raise InputError(cfg.data, "--init frustum needs per-view near/far bounds (LLFF)")
            xyz, rgb = self.frustum_points(cfg.init_points)
            return (G.from_points(xyz, rgb, cfg.sh_degree, cfg.init_opacity),
                    f"{cfg.init_points} points between the near and far bounds of the training views")
        return (G.random_in_box(cfg.init_points, focus - r, focus + r, cfg.sh_degree, self.gen),
                f"{cfg.init_points} random points within {r:.2f} of the focus point")

    def hull_points(self, n: int, lo: np.ndarray, hi: np.ndarray, views: int = 50,
                    batch: int = 1 << 18) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to n random points of the box [lo, hi] inside the visual hull: every one of `views`
        training views that sees the point (in front, inside the frame) sees it on its silhouette
        (alpha > 0.5). Coloured by the pixel of the view nearest to the point."""
        g = self.gen
        ks = np.linspace(0, len(self.train_idx) - 1, min(views, len(self.train_idx))).round().astype(int)
        w2cs = [torch.from_numpy(np.linalg.inv(self.scene.frames[self.train_idx[k]].c2w)).float() for k in ks]
        Ks = [self.scene.frames[self.train_idx[k]].intrinsics for k in ks]
        lo_t, hi_t = torch.as_tensor(lo, dtype=torch.float32), torch.as_tensor(hi, dtype=torch.float32)
        found_xyz, found_rgb, total = [], [], 0
        for _ in range(64):
            x = lo_t + (hi_t - lo_t) * torch.rand(batch, 3, generator=g)
            keep = torch.ones(batch, dtype=torch.bool)
            best = torch.full((batch,), float("inf"))
            rgb = torch.zeros(batch, 3)
            for k, w2c, K in zip(ks, w2cs, Ks):
                cam = x @ w2c[:3, :3].T + w2c[:3, 3]
                z = cam[:, 2]
                u = (cam[:, 0] / z.clamp_min(1e-9) * K.fx + K.cx).floor().long()
                v = (cam[:, 1] / z.clamp_min(1e-9) * K.fy + K.cy).floor().long()
                seen = (z > 0) & (u >= 0) & (u < K.width) & (v >= 0) & (v < K.height)
                img = self.images[k]
                px = img[v[seen], u[seen]]
                inside = torch.ones(batch, dtype=torch.bool)
                inside[seen] = px[:, 3] > 0.5
                keep &= inside
                nearer = torch.zeros(batch, dtype=torch.bool)
                nearer[seen] = z[seen] < best[seen]
                best = torch.where(nearer, z, best)
                sel = torch.nonzero(nearer)[:, 0]
                rgb[sel] = img[v[sel], u[sel], :3]
            found_xyz.append(x[keep])
            found_rgb.append(rgb[keep])
            total += int(keep.sum())
            if total >= n:
                break
        return torch.cat(found_xyz)[:n], torch.cat(found_rgb)[:n]

    def frustum_points(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n points seen by the training views: a random view, pixel and disparity between the
        view's near and far bounds (LLFF's), coloured by that pixel. For scenes without SfM
        points this is a far better start than a box, above all for forward-facing captures."""
        g = self.gen
        view = torch.randint(len(self.train_idx), (n,), generator=g)
        xyz, rgb = torch.empty(n, 3), torch.empty(n, 3)
        for k in view.unique().tolist():
            sel = torch.nonzero(view == k).flatten()
            frame, img = self.scene.frames[self.train_idx[k]], self.images[k]
            intr = frame.intrinsics
            near, far = (float(v) for v in self.scene.near_far[self.train_idx[k]])
            u = torch.rand(len(sel), generator=g) * intr.width
            v = torch.rand(len(sel), generator=g) * intr.height
            disp = 1 / far + torch.rand(len(sel), generator=g) * (1 / near - 1 / far)
            d = torch.from_numpy(intr.pixel_directions(torch.stack([u, v], 1).double().numpy())).float()
            c2w = torch.from_numpy(frame.c2w).float()
            xyz[sel] = (d / disp[:, None]) @ c2w[:3, :3].T + c2w[:3, 3]
            rgb[sel] = img[v.long().clamp(max=intr.height - 1), u.long().clamp(max=intr.width - 1), :3]
        return xyz, rgb

    # ------------------------------------------------------------------ schedule and state
    def progress(self, step: int) -> float:
        """Fraction of the budget used: steps, or wall time with --max-minutes, whichever is
        further along. The position learning rate and the densification window follow it, so
        a time-limited run still anneals and stops densifying halfway."""
        t = step / max(self.cfg.max_steps, 1)
        if self.cfg.max_minutes:
            t = max(t, self.train_seconds / (60 * self.cfg.max_minutes))
        return min(t, 1.0)

    def means_lr(self, step: int) -> float:
        t = self.progress(step)
        return self.extent * math.exp((1 - t) * math.log(self.cfg.lr_means) + t * math.log(self.cfg.lr_means_final))

    def state_dict(self) -> dict:
        return {"step": self.step, "train_seconds": self.train_seconds, "order": torch.tensor(self.order, dtype=torch.long),
                "params": {k: v.detach().clone() for k, v in self.params.items()},
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "strategy": self.strategy.state_dict(), "generator": self.gen.get_state(),
                "config": _config_fingerprint(self.cfg)}

    def load_state_dict(self, d: dict, source: Path) -> None:
        if d.get("config") != _config_fingerprint(self.cfg):
            raise InputError(source, "checkpoint was made with different training options; resume with the same ones")
        self.step, self.train_seconds = int(d["step"]), float(d["train_seconds"])
        self.order = d["order"].tolist()
        for k in self.params:
            self.params[k] = torch.nn.Parameter(d["params"][k].clone())
            opt = torch.optim.Adam([self.params[k]], lr=1.0, eps=1e-15)
            opt.load_state_dict(d["optimizers"][k])
            self.optimizers[k] = opt
        self.strategy.load_state_dict(d["strategy"])
        self.gen.set_state(d["generator"])

    def save_checkpoint(self) -> None:
        from engine.io import atomic_path

        with atomic_path(self.run.path("checkpoints", "last.pt")) as tmp:
            torch.save(self.state_dict(), tmp)

    # ------------------------------------------------------------------ rendering
    def render(self, frame, sh_degree: int, bg: torch.Tensor, c2w: np.ndarray | None = None, absgrad=False):
        from kernels.splat import rasterize_gaussians

        p = self.params
        intr = frame.intrinsics
        sh = torch.cat([p["sh_dc"], p["sh_rest"]], 1)
        return rasterize_gaussians(p["means"], p["quats"], p["log_scales"], torch.sigmoid(p["opacity_logits"]), sh,
                                   _viewmat(frame.c2w if c2w is None else c2w), _K(intr), intr.width, intr.height,
                                   sh_degree=sh_degree, background=bg, antialiased=self.cfg.antialiased,
                                   absgrad=absgrad)

    # ------------------------------------------------------------------ training
    def next_view(self) -> int:
        if not self.order:
            self.order = torch.randperm(len(self.train_idx), generator=self.gen).tolist()
        return self.order.pop()

    def train(self) -> dict:
        from engine.losses import psnr, splat_loss
        from engine.progress import progress
        from kernels._build import cpu_ops

        cfg = self.cfg
        cpu_ops()  # a first build takes a minute: not training time
        deadline = None if cfg.max_minutes is None else cfg.max_minutes * 60
        stats_log = []
        with progress() as bar:
            task = bar.add_task("training", total=cfg.max_steps, completed=self.step)
            while self.step < cfg.max_steps:
                if deadline is not None and self.train_seconds >= deadline:
                    log.info("stopping at step %d: --max-minutes reached", self.step)
                    break
                step = self.step + 1
                if cfg.kill_at_step is not None and step == cfg.kill_at_step:
                    os.kill(os.getpid(), signal.SIGKILL)
                t0 = time.perf_counter()
                for g in self.optimizers["means"].param_groups:
                    g["lr"] = self.means_lr(step)
                k = self.next_view()
                frame = self.scene.frames[self.train_idx[k]]
                target = self.images[k]
                bg = torch.rand(3, generator=self.gen) if cfg.random_background else self.bg
                if target.shape[-1] == 4:
                    target = target[..., :3] * target[..., 3:] + bg * (1 - target[..., 3:])
                sh_degree = min(cfg.sh_degree, (step - 1) // cfg.sh_degree_interval)
                out = self.render(frame, sh_degree, bg, absgrad=getattr(self.strategy, "absgrad", False))
                out["width"], out["height"] = frame.intrinsics.width, frame.intrinsics.height
                loss = splat_loss(out["rgb"], target, cfg.ssim_lambda)
                if cfg.strategy == "mcmc":
                    loss = loss + self.strategy.regularization(self.params)
                self.strategy.pre_backward(step, out)
                loss.backward()
                for opt in self.optimizers.values():
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                if self.cfg.refine_stop is None and self.progress(step) >= 0.5 and self.strategy.refine_stop > step:
                    self.strategy.refine_stop = step  # densify during the first half of the budget
                stats = self.strategy.post_backward(step, out, self.params, self.optimizers, self.extent,
                                                    means_lr=self.means_lr(step), generator=self.gen)
                if stats:
                    stats_log.append({"step": step, **stats})
                self.step = step
                self.train_seconds += time.perf_counter() - t0
                if step % 10 == 0 or step == cfg.max_steps:
                    bar.update(task, completed=step, description=f"training  loss {loss.item():.4f}  "
                               f"PSNR {psnr(out['rgb'].detach(), target):.2f}  N {len(self.params['means']):,}")
                if step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if self.live is not None:
                    self.live.offer(self.params, step)
        self.save_checkpoint()
        if self.live is not None:
            self.live.offer(self.params, self.step, final=True)
        return {"refinements": stats_log[-20:]}

    # ------------------------------------------------------------------ evaluation and outputs
    @torch.no_grad()
    def evaluate(self) -> dict:
        from PIL import Image

        from engine.io import atomic_path
        from engine.losses import psnr, ssim
        from engine.progress import track

        idx = self.test_idx
        if self.cfg.eval_views and len(idx) > self.cfg.eval_views:
            idx = [idx[round(i * (len(idx) - 1) / (self.cfg.eval_views - 1))] for i in range(self.cfg.eval_views)] \
                if self.cfg.eval_views > 1 else idx[:1]
        if not idx:
            return {}
        ps, ss = [], []
        out_dir = self.run.path("renders", "test")
        out_dir.mkdir(parents=True, exist_ok=True)
        for n, i in enumerate(track(idx, "evaluating test views")):
            frame = self.scene.frames[i]
            target = torch.from_numpy(self.scene.image(i))
            out = self.render(frame, self.cfg.sh_degree, self.bg)
            rgb = out["rgb"].clamp(0, 1)
            ps.append(psnr(rgb, target))
            ss.append(float(ssim(rgb, target)))
            with atomic_path(out_dir / f"{n:04d}.png") as tmp:
                Image.fromarray((rgb.numpy() * 255).round().astype(np.uint8)).save(tmp, format="PNG")
            if n < 8:
                depth = (out["depth"] / out["alpha"].clamp(min=1e-6)).numpy()
                valid = out["alpha"].numpy() > 0.5
                lo, hi = (np.percentile(depth[valid], [1, 99]) if valid.any() else (0.0, 1.0))
                d16 = (np.clip((depth - lo) / max(hi - lo, 1e-9), 0, 1) * 65535 * valid).astype(np.uint16)
                with atomic_path(self.run.path("renders", "depth", f"{n:04d}.png")) as tmp:
                    Image.fromarray(d16).save(tmp, format="PNG")
        return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "views": len(idx),
                "lpips": None, "lpips_note": "not computed: its backbone weights are not available locally"}

    def live_camera(self):
        """The first training camera, at most 640 pixels wide: what the live view shows."""
        from viewer.framing import camera_view

        frame = self.scene.frames[self.train_idx[0]]
        i = frame.intrinsics
        scale = min(1.0, 640 / i.width)
        return camera_view(frame.c2w, i, max(16, round(i.width * scale)), max(16, round(i.height * scale)))

    @torch.no_grad()
    def render_video(self) -> Path | None:
        from engine.io import write_mp4
        from engine.progress import track

        if self.cfg.video_frames <= 0:
            return None
        c2ws = np.stack([self.scene.frames[i].c2w for i in self.train_idx])
        frame = self.scene.frames[self.train_idx[0]]
        path = self.run.path("renders", "video.mp4")
        write_mp4(path, ((self.render(frame, self.cfg.sh_degree, self.bg, c2w=c2w)["rgb"].clamp(0, 1).numpy() * 255)
                         .round().astype(np.uint8)
                         for c2w in track(camera_path(c2ws, self.cfg.video_frames), "rendering video")))
        return path

    def export(self) -> dict:
        from scenes.gaussians import save_ply, save_splat

        ply, splat = self.run.path("exports", "point_cloud.ply"), self.run.path("exports", "scene.splat")
        save_ply(self.params, ply)
        save_splat(self.params, splat)
        return {"ply": str(ply), "splat": str(splat)}


def _config_fingerprint(cfg) -> str:
    keep = {k: v for k, v in asdict(cfg).items()
            if k not in ("resume", "out", "overwrite", "debug", "max_minutes", "kill_at_step", "eval_views",
                         "video_frames", "checkpoint_every", "device", "live_view", "live_every")}
    return repr(sorted((k, str(v)) for k, v in keep.items()))


def train(cfg: TrainGaussiansJob, run) -> dict:
    if cfg.device == "cuda":
        raise InputError(None, "training on CUDA is not wired up yet; use --device cpu")
    trainer = Trainer(cfg, run)
    ckpt = run.path("checkpoints", "last.pt")
    if cfg.resume and ckpt.is_file():
        from engine.io import load_checkpoint

        trainer.load_state_dict(load_checkpoint(ckpt), ckpt)
        log.info("resumed from %s at step %d", ckpt, trainer.step)
    elif cfg.resume:
        log.info("no checkpoint in %s: starting from scratch", run.root)
    live = None
    if cfg.live_view != "off":
        from viewer.live import LivePreview

        live = trainer.live = LivePreview(trainer.live_camera(), cfg.live_every, run.path("renders", "live.png"),
                                          tuple(trainer.bg.tolist()))
    if cfg.live_view == "window":
        extra = live.run_window(trainer.train)
    else:
        if live is not None:
            live.start_offscreen()
        extra = trainer.train()
    if live is not None:
        extra["live_view"] = {"mode": cfg.live_view, **live.close()}
    test = trainer.evaluate()
    video = trainer.render_video()
    exports = trainer.export()
    metrics = {"test": test, "num_gaussians": len(trainer.params["means"]), "steps": trainer.step,
               "train_seconds": trainer.train_seconds,
               "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "strategy": cfg.strategy, "init": trainer.init_info, "exports": exports,
               "video": str(video) if video else None, **extra}
    run.write_metrics(**metrics)
    if test:
        log.info("test PSNR %.2f dB, SSIM %.4f over %d views; %d Gaussians, %d steps in %.0f s", test["psnr"],
                 test["ssim"], test["views"], metrics["num_gaussians"], trainer.step, trainer.train_seconds)
    return metrics
