"""NeRF training pieces (instant-NGP recipe on our kernels): rays of a dataset's photos, the optimiser,
and the step loop with occupancy-grid updates. The `lumen3d train nerf` job (checkpoints, evaluation,
renders, mesh export) is built on these.
"""
from __future__ import annotations

import math
import os
import signal
import time

import numpy as np
import torch
from torch import Tensor

from scenes.nerf import OccupancyGrid, RadianceField, default_step, render_rays

MESH_THRESHOLD = 10.0  # σ of the exported surface (an optical depth of ≈ 0.05 over one marching step on lego)


def camera_rays(c2w: np.ndarray, intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre rays of a camera (OpenCV axes, lens distortion undone): origins and unit
    directions (H·W, 3), row-major."""
    u, v = np.meshgrid(np.arange(intrinsics.width) + 0.5, np.arange(intrinsics.height) + 0.5)
    d = intrinsics.pixel_directions(np.stack([u, v], -1)).reshape(-1, 3) @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.broadcast_to(c2w[:3, 3], d.shape).copy(), d


def frame_rays(frame) -> tuple[np.ndarray, np.ndarray]:
    return camera_rays(frame.c2w, frame.intrinsics)


def composited(img: np.ndarray, background) -> np.ndarray:
    """RGB(A) float image → RGB over the background."""
    if img.shape[-1] == 4:
        return img[..., :3] * img[..., 3:] + (1 - img[..., 3:]) * np.asarray(background, np.float32)
    return img


def dataset_rays(scene, indices, keep_alpha: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """All rays and colours of the frames `indices`: origins, directions, rgb (N, 3) float32 over the
    scene's background, or rgba (N, 4) straight from RGBA photos with `keep_alpha`."""
    O, D, C = [], [], []
    for i in indices:
        o, d = frame_rays(scene.frames[i])
        O.append(o)
        D.append(d)
        img = scene.image_rgba(i)
        C.append(img.reshape(-1, 4) if keep_alpha and img.shape[-1] == 4
                 else composited(img, scene.background).reshape(-1, 3))
    f32 = lambda a: torch.as_tensor(np.concatenate(a), dtype=torch.float32)  # noqa: E731
    return f32(O), f32(D), f32(C)


def make_optimizer(field: RadianceField, lr: float = 1e-2) -> torch.optim.Adam:
    """instant-NGP's Adam: β = (0.9, 0.99), ε = 1e-15 on the table, a little weight decay on the MLPs."""
    mlps = list(field.density_mlp.parameters()) + list(field.colour_mlp.parameters())
    return torch.optim.Adam([{"params": [field.table], "eps": 1e-15},
                             {"params": mlps, "weight_decay": 1e-6, "eps": 1e-15}], lr=lr, betas=(0.9, 0.99))


def train_steps(field: RadianceField, grid: OccupancyGrid, opt, rays: tuple[Tensor, Tensor, Tensor], steps: int,
                batch: int, dt: float, background: Tensor, near: float = 0.05, seed: int = 0, start: int = 0,
                on_step=None, cone: float = 0.0) -> dict:
    """`steps` optimiser steps of `batch` random rays (MSE on colour); the grid is refreshed every 16 steps.
    With RGBA colours (N, 4) each ray gets a random background, on the target and the render alike, so
    that the field cannot paint the background into the scene. Returns timings per stage and the last loss."""
    O, D, C = rays
    g = torch.Generator().manual_seed(seed)
    times = {"grid": 0.0, "forward": 0.0, "backward": 0.0}
    loss = torch.tensor(float("nan"))
    samples = 0
    for step in range(start, start + steps):
        if step % 16 == 0:
            t = time.perf_counter()
            grid.update(field.density, step, g, cells_per_update=grid.density.numel() // 4)
            times["grid"] += time.perf_counter() - t
        idx = torch.randint(0, len(O), (batch,), generator=g)
        t = time.perf_counter()
        target = C[idx]
        bg = background
        if target.shape[1] == 4:
            bg = torch.rand(batch, 3, generator=g)
            target = target[:, :3] * target[:, 3:] + bg * (1 - target[:, 3:])
        out = render_rays(field, grid, O[idx], D[idx], torch.full((batch,), near), torch.full((batch,), 1e4), dt,
                          bg, cone)
        loss = ((out["rgb"] - target) ** 2).mean()
        times["forward"] += time.perf_counter() - t
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times["backward"] += time.perf_counter() - t
        samples += out["samples"]
        if on_step is not None:
            on_step(step, float(loss.detach()))
    return {"times": times, "loss": float(loss.detach()), "samples_per_ray": samples / max(steps * batch, 1)}


@torch.no_grad()
def render_image(field: RadianceField, grid: OccupancyGrid, frame, dt: float, background: Tensor,
                 chunk: int = 8192, cone: float = 0.0) -> np.ndarray:
    """A frame's (H, W, 3) float image, or any camera's: `frame` is a dataset frame or (c2w, intrinsics)."""
    c2w, K = (frame.c2w, frame.intrinsics) if hasattr(frame, "c2w") else frame
    o, d = camera_rays(c2w, K)
    o, d = torch.as_tensor(o, dtype=torch.float32), torch.as_tensor(d, dtype=torch.float32)
    out = []
    for k in range(0, len(o), chunk):
        n = len(o[k:k + chunk])
        out.append(render_rays(field, grid, o[k:k + chunk], d[k:k + chunk], torch.full((n,), 0.05),
                               torch.full((n,), 1e4), dt, background, cone)["rgb"])
    return torch.cat(out).reshape(K.height, K.width, 3).numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return -10 * math.log10(max(float(((a - b) ** 2).mean()), 1e-12))


# --- the job ----------------------------------------------------------------------------------------------
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Literal, Optional  # noqa: E402

import tyro  # noqa: E402

from engine.runs import RunOptions  # noqa: E402


@dataclass(kw_only=True)
class TrainNerfJob(RunOptions):
    """Train an instant-NGP-style NeRF (hash grid, occupancy-grid marching) on our kernels."""

    data: tyro.conf.Positional[Path]
    """Dataset: Blender, nerfstudio, COLMAP or LLFF."""
    format: Literal["auto", "blender", "nerfstudio", "colmap", "llff"] = "auto"
    downscale: Optional[float] = None
    max_steps: int = 2000
    max_minutes: Optional[float] = None
    """Stop training after this many minutes (the schedule follows whichever budget runs out first)."""
    samples_per_step: int = 1 << 16
    """Target samples per step: the number of rays adapts to how many samples each ray needs."""
    max_rays: int = 8192
    lr: float = 1e-2
    log2_table: int = 17
    grid_res: int = 128
    checkpoint_every: int = 250
    resume: bool = False
    eval_views: Optional[int] = None
    """Evaluate on this many test views (evenly spaced; default all)."""
    video_frames: int = 60
    """Frames of the camera-path video (0: none)."""
    mesh_resolution: int = 256
    """Marching-cubes lattice per axis for exports/mesh.ply (0: no mesh)."""
    mesh_threshold: float = MESH_THRESHOLD
    """Density level of the mesh surface."""
    random_background: bool = True
    """With RGBA photos (Blender scenes), train each ray over a random background colour."""
    kill_at_step: Optional[int] = None
    """Testing aid: SIGKILL this process when it reaches this step, as a crash would."""

    def run(self):
        from engine.runs import start_run

        if not self.data.exists():
            from engine.errors import InputError

            raise InputError(self.data, "dataset not found")
        run = start_run("train-nerf", self, inputs=[self.data], resume=self.resume)
        return train_nerf(self, run)


def scene_box(scene) -> tuple[list[float], list[float], bool]:
    """Centre, half-size and boundedness: Blender scenes live in ±1.5; captures are unbounded around
    their cameras' focus."""
    if scene.format == "blender":
        return [0.0, 0.0, 0.0], [1.5, 1.5, 1.5], False
    from engine.train_gaussians import focus_point

    c2ws = np.stack([f.c2w for f in scene.frames])
    centre = focus_point(c2ws)
    radius = float(np.linalg.norm(c2ws[:, :3, 3] - centre, axis=1).max())
    return centre.tolist(), [radius] * 3, True


def lr_factor(progress: float) -> float:
    """nerfacc's instant-NGP decay on the budget's progress in [0, 1]: ×0.33 at 1/2, 3/4 and 9/10.
    (No warm-up: short CPU budgets cannot spare the steps.)"""
    return 0.33 ** sum(progress >= m for m in (0.5, 0.75, 0.9))


@dataclass
class NerfModel:
    """What a NeRF run's checkpoint holds, ready to render: the field, its grid, the marching step."""

    field: RadianceField
    grid: OccupancyGrid
    dt: float
    cone: float
    background: Tensor

    @staticmethod
    def build(centre, half, unbounded: bool, cfg, grid_res: int, background, seed: int = 0) -> "NerfModel":
        field = RadianceField(centre, half, unbounded, cfg, seed=seed)
        dt = default_step(field.box_half)
        grid = OccupancyGrid(*field.grid_box(), dt, cascades=5 if unbounded else 1, res=grid_res)
        return NerfModel(field, grid, dt, 1 / 256 if unbounded else 0.0,
                         torch.as_tensor(background, dtype=torch.float32))

    def meta(self) -> dict:
        f = self.field
        return {"centre": f.box_centre.tolist(), "half": f.box_half.tolist(), "unbounded": f.unbounded,
                "field": asdict(f.cfg), "grid_res": self.grid.res, "background": self.background.tolist()}

    @staticmethod
    def from_checkpoint(d: dict, source: Path) -> "NerfModel":
        from engine.errors import InputError
        from scenes.nerf import FieldConfig

        m = d.get("model")
        if not isinstance(m, dict) or "grid_density" not in d:
            raise InputError(source, "not a NeRF checkpoint (no field description)")
        model = NerfModel.build(m["centre"], m["half"], m["unbounded"], FieldConfig(**m["field"]), m["grid_res"],
                                m["background"])
        try:
            model.field.load_state_dict(d["params"])
        except RuntimeError as e:
            raise InputError(source, f"field parameters do not match its description ({str(e).splitlines()[0]})")
        model.grid.density, model.grid.bits = d["grid_density"], d["grid_bits"]
        return model

    def render(self, c2w: np.ndarray, intrinsics, chunk: int = 8192) -> np.ndarray:
        return render_image(self.field, self.grid, (c2w, intrinsics), self.dt, self.background, chunk, self.cone)


def _fingerprint(cfg: TrainNerfJob) -> str:
    keep = {k: v for k, v in asdict(cfg).items()
            if k not in ("resume", "out", "overwrite", "debug", "max_minutes", "eval_views", "video_frames",
                         "checkpoint_every", "device", "mesh_resolution", "mesh_threshold", "kill_at_step")}
    return repr(sorted((k, str(v)) for k, v in keep.items()))


def train_nerf(cfg: TrainNerfJob, run) -> dict:
    import logging
    import resource

    from engine.data import load_scene
    from engine.errors import InputError
    from engine.io import atomic_path, load_checkpoint
    from engine.progress import progress
    from kernels._build import nerf_cpu_ops
    from scenes.nerf import FieldConfig

    if cfg.device == "cuda":
        raise InputError(None, "NeRF training on CUDA is not wired up yet; use --device cpu")
    log = logging.getLogger("lumen3d")
    scene = load_scene(cfg.data, cfg.format, cfg.downscale)
    if not scene.splits.get("train"):
        raise InputError(cfg.data, "the dataset has no training images")
    centre, half, unbounded = scene_box(scene)
    model = NerfModel.build(centre, half, unbounded, FieldConfig(log2_table=cfg.log2_table), cfg.grid_res,
                            scene.background, seed=cfg.seed)
    field, grid, dt, cone, bg = model.field, model.grid, model.dt, model.cone, model.background
    opt = make_optimizer(field, cfg.lr)
    train_frames = [scene.frames[i] for i in scene.splits["train"]]
    near = 0.9 * float(scene.near_far[scene.splits["train"]].min()) if scene.near_far is not None else 0.0
    visible = grid.mark_invisible(np.stack([f.c2w for f in train_frames]), [f.intrinsics for f in train_frames], near)
    log.info("occupancy grid: %.1f%% of its cells are seen by a training view", 100 * visible)
    rays = dataset_rays(scene, scene.splits["train"], keep_alpha=cfg.random_background)
    state = {"step": 0, "train_seconds": 0.0, "rays": 0, "batch": 1024}
    ckpt = run.path("checkpoints", "last.pt")
    if cfg.resume and ckpt.is_file():
        d = load_checkpoint(ckpt)
        if d.get("config") != _fingerprint(cfg):
            raise InputError(ckpt, "checkpoint was made with different training options; resume with the same ones")
        field.load_state_dict(d["params"])
        opt.load_state_dict(d["optimizer"])
        grid.density, grid.bits = d["grid_density"], d["grid_bits"]
        state.update({k: d["state"][k] for k in state})
        log.info("resumed from %s at step %d", ckpt, state["step"])

    def save():
        with atomic_path(ckpt) as tmp:
            torch.save({"params": field.state_dict(), "optimizer": opt.state_dict(), "grid_density": grid.density,
                        "grid_bits": grid.bits, "state": state, "model": model.meta(),
                        "config": _fingerprint(cfg)}, tmp)

    nerf_cpu_ops()  # a first build takes a minute: not training time
    deadline = None if cfg.max_minutes is None else cfg.max_minutes * 60
    times = {"grid": 0.0, "forward": 0.0, "backward": 0.0}
    with progress() as bar:
        task = bar.add_task("training", total=cfg.max_steps, completed=state["step"])
        while state["step"] < cfg.max_steps and (deadline is None or state["train_seconds"] < deadline):
            frac = state["step"] / cfg.max_steps
            if deadline is not None:
                frac = max(frac, state["train_seconds"] / deadline)
            for group in opt.param_groups:
                group["lr"] = cfg.lr * lr_factor(frac)
            if cfg.kill_at_step is not None and state["step"] + 1 == cfg.kill_at_step:
                os.kill(os.getpid(), signal.SIGKILL)
            t = time.perf_counter()
            info = train_steps(field, grid, opt, rays, 1, state["batch"], dt, bg, seed=cfg.seed * 100003 + state["step"],
                               start=state["step"], cone=cone)
            state["train_seconds"] += time.perf_counter() - t
            state["rays"] += state["batch"]
            for k in times:
                times[k] += info["times"][k]
            # the next batch: as many rays as keep the samples per step near the target
            per_ray = max(info["samples_per_ray"], 1.0)
            state["batch"] = int(min(cfg.max_rays, max(256, cfg.samples_per_step / per_ray)))
            state["step"] += 1
            if state["step"] % 10 == 0:
                bar.update(task, completed=state["step"], description=f"training  loss {info['loss']:.4f}  "
                           f"PSNR {-10 * math.log10(max(info['loss'], 1e-12)):.2f}  rays {state['batch']}")
            if state["step"] % cfg.checkpoint_every == 0:
                save()
    save()
    metrics = {"test": evaluate(model, scene, run, cfg.eval_views), "steps": state["step"],
               "train_seconds": state["train_seconds"],
               "rays_per_second": state["rays"] / max(state["train_seconds"], 1e-9),
               "peak_mem_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "profile_seconds": times, "occupancy": float(grid.bits.float().mean()),
               "bounded": not unbounded, "exports": {}}
    if cfg.video_frames > 0:
        metrics["video"] = str(render_video(model, scene, run.path("renders", "video.mp4"), cfg.video_frames))
    if cfg.mesh_resolution > 0:
        try:
            metrics["exports"]["mesh"] = export_mesh(model, run.path("exports", "mesh.ply"), cfg.mesh_resolution,
                                                     cfg.mesh_threshold)
        except InputError as e:  # an untrained or empty field: the run's other results still count
            log.warning("no mesh: %s", e)
    run.write_metrics(**metrics)
    if metrics["test"]:
        log.info("test PSNR %.2f dB, SSIM %.4f over %d views; %d steps in %.0f s (%.0f rays/s)",
                 metrics["test"]["psnr"], metrics["test"]["ssim"], metrics["test"]["views"], state["step"],
                 state["train_seconds"], metrics["rays_per_second"])
    return metrics


def evaluate(model: NerfModel, scene, run, views: Optional[int] = None) -> dict:
    """PSNR/SSIM on the test split (`views` evenly spaced ones, default all), renders to renders/test/."""
    from PIL import Image

    from engine.io import atomic_path
    from engine.losses import ssim
    from engine.progress import track

    idx = scene.splits.get("test") or []
    if views and len(idx) > views:
        idx = [idx[round(i * (len(idx) - 1) / max(views - 1, 1))] for i in range(views)]
    if not idx:
        return {}
    ps, ss = [], []
    for n, i in enumerate(track(idx, "evaluating test views")):
        gt = composited(scene.image_rgba(i), scene.background)
        f = scene.frames[i]
        img = np.clip(model.render(f.c2w, f.intrinsics), 0, 1)
        ps.append(psnr(img, gt))
        ss.append(float(ssim(torch.from_numpy(img).float(), torch.from_numpy(gt).float())))
        with atomic_path(run.path("renders", "test", f"{n:04d}.png")) as tmp:
            Image.fromarray((img * 255).round().astype(np.uint8)).save(tmp, format="PNG")
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "views": len(idx),
            "lpips": None, "lpips_note": "not computed: its backbone weights are not available locally"}


def render_video(model: NerfModel, scene, path: Path, frames: int) -> Path:
    """The camera path of `engine.train_gaussians.camera_path` (orbit or spiral) at the first training
    view's intrinsics, as H.264."""
    from engine.io import write_mp4
    from engine.progress import track
    from engine.train_gaussians import camera_path

    c2ws = np.stack([scene.frames[i].c2w for i in scene.splits["train"]])
    intr = scene.frames[scene.splits["train"][0]].intrinsics
    write_mp4(path, ((np.clip(model.render(c2w, intr), 0, 1) * 255).round().astype(np.uint8)
                     for c2w in track(camera_path(c2ws, frames), "rendering video")))
    return path


def export_mesh(model: NerfModel, path: Path, resolution: int, threshold: float) -> dict:
    """exports/mesh.ply (or any suffix trimesh writes): marching cubes on the density, vertex colours."""
    from engine.progress import progress
    from scenes.nerf_mesh import field_mesh, save_mesh

    with progress() as bar:
        task = bar.add_task("meshing", total=resolution)
        mesh = field_mesh(model.field, model.grid, resolution, threshold, progress=lambda: bar.advance(task))
    v = mesh["vertices"]
    if not len(mesh["faces"]):
        from engine.errors import InputError

        raise InputError(path, f"the field has no surface above density {threshold:g}; lower --mesh-threshold")
    save_mesh(mesh, path)
    return {"path": str(path), "vertices": len(v), "faces": len(mesh["faces"]), "resolution": resolution,
            "threshold": threshold, "bounds": [v.min(0).tolist(), v.max(0).tolist()] if len(v) else None}
