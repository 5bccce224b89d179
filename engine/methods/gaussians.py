"""3D Gaussian Splatting: the Inria recipe on our kernels, with ADC or MCMC densification, a start
from SfM points, triangulation, silhouettes or the views' depth bounds, and PLY/.splat exports."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from engine.cameras import focus_point
from engine.errors import InputError
from engine.losses import PhotometricLoss
from engine.methods.reconstruction import ReconstructionMethod
from engine.rendering.background import RandomBackground, SolidBackground, composite
from engine.rendering.gaussians import render_gaussians
from engine.strategies import gaussian_adam

log = logging.getLogger("lumen3d")


def export_splats(params: dict, run) -> dict:
    """exports/point_cloud.ply (Inria layout) and exports/scene.splat of a run's Gaussians."""
    from scenes.gaussians import save_ply, save_splat

    ply, splat = run.path("exports", "point_cloud.ply"), run.path("exports", "scene.splat")
    save_ply(params, ply)
    save_splat(params, splat)
    return {"ply": str(ply), "splat": str(splat)}


class GaussianSplatting(ReconstructionMethod):
    kind = "gaussians"

    def __init__(self, cfg, device: str = "cpu", dataset=None, group=None):
        from engine.progress import track
        from engine.strategies import ADCStrategy, MCMCStrategy

        super().__init__(cfg, dataset, group)
        self.device = device
        if self.scene.distorted:  # the rasterizer projects pinhole cameras
            models = sorted({f.intrinsics.model for f in self.scene.frames if f.intrinsics.has_distortion})
            fx = self.scene.frames[0].intrinsics.fx
            self.scene = self.scene.undistorted()
            log.info("undistorted the photos of %s cameras to pinhole ones (focal ×%.3f, no blank pixels) for the "
                     "Gaussian rasterizer, which projects pinhole cameras; training and test views are the "
                     "undistorted photos", "/".join(models), self.scene.frames[0].intrinsics.fx / fx)
        scene = self.scene
        self.gen = torch.Generator().manual_seed(cfg.seed)
        bg = cfg.background or ((1.0, 1.0, 1.0) if scene.format == "blender" else (0.0, 0.0, 0.0))
        scene.background = tuple(bg)
        self.solid = SolidBackground(bg).to(device)
        self.background = self.solid.colour
        self.train_background = RandomBackground(device) if cfg.random_background else self.solid
        self.images = [torch.from_numpy(scene.image_rgba(i)).to(device)
                       for i in track(self.train_idx, "loading images", disable=not self.group.main)]
        if cfg.random_background and self.images[0].shape[-1] != 4:
            raise InputError(cfg.data, "--random-background needs images with an alpha channel")
        centres = self.train_c2ws[:, :3, 3]
        self.extent = 1.1 * float(np.linalg.norm(centres - centres.mean(0), axis=1).max())
        self.init_info: dict = {}
        params, init = self.initial_gaussians(self.train_c2ws)
        self.params = {k: torch.nn.Parameter(v.detach().to(device)) for k, v in params.items()}
        self.init_info["from"] = init
        first = scene.frames[self.train_idx[0]].intrinsics
        log.info("%s: %d train / %d test views at %dx%d, extent %.3f, init from %s", scene.root, len(self.train_idx),
                 len(self.test_idx), first.width, first.height, self.extent, init)
        lrs = self.learning_rates()
        self.optimizers = {k: gaussian_adam(p, lrs[k]) for k, p in self.params.items()}
        refine_stop = cfg.refine_stop if cfg.refine_stop is not None else cfg.max_steps // 2
        if cfg.strategy == "adc":
            self.strategy = ADCStrategy(grad_threshold=cfg.grad_threshold, refine_start=cfg.refine_start,
                                        refine_stop=refine_stop, refine_every=cfg.refine_every,
                                        reset_every=cfg.reset_every)
        else:
            self.strategy = MCMCStrategy(cap_max=cfg.cap_max, refine_start=cfg.refine_start, refine_stop=refine_stop,
                                         refine_every=cfg.refine_every)
        self.loss = PhotometricLoss(cfg.ssim_lambda)
        self.order: list[int] = []
        self.refinements: list[dict] = []

    def learning_rates(self) -> dict[str, float]:
        cfg = self.cfg
        return {"means": cfg.lr_means * self.extent, "log_scales": cfg.lr_scales, "quats": cfg.lr_quats,
                "opacity_logits": cfg.lr_opacity, "sh_dc": cfg.lr_sh, "sh_rest": cfg.lr_sh / 20}

    # ------------------------------------------------------------------ the start
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
                img = self.images[k].cpu()
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
            frame, img = self.scene.frames[self.train_idx[k]], self.images[k].cpu()
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

    # ------------------------------------------------------------------ training
    def prepare(self) -> None:
        from kernels._build import cpu_ops

        cpu_ops()

    def means_lr(self, fraction: float) -> float:
        t = fraction
        return self.extent * math.exp((1 - t) * math.log(self.cfg.lr_means) + t * math.log(self.cfg.lr_means_final))

    def next_view(self) -> int:
        if not self.order:
            self.order = torch.randperm(len(self.train_idx), generator=self.gen).tolist()
        return self.order.pop()

    def train_step(self, step: int, fraction) -> dict:
        """One step of `batch_size` views on each process. Every process draws the whole step's views
        and backgrounds from the shared generator and renders its own share; the loss is the mean
        over all of them, so the summed gradients are those of one process with the whole batch."""
        cfg, group = self.cfg, self.group
        for g in self.optimizers["means"].param_groups:
            g["lr"] = self.means_lr(fraction(step))
        views = [self.next_view() for _ in range(cfg.batch_size * group.world)]
        backgrounds = [self.train_background.sample((), self.gen) for _ in views]
        mine = slice(group.rank * cfg.batch_size, (group.rank + 1) * cfg.batch_size)
        sh_degree = min(cfg.sh_degree, (step - 1) // cfg.sh_degree_interval)
        infos, total, sq = [], 0.0, 0.0
        for k, bg in zip(views[mine], backgrounds[mine]):
            target = composite(self.images[k], bg)
            out = render_gaussians(self.params, self.camera(self.train_idx[k]), bg, sh_degree, cfg.antialiased,
                                   absgrad=getattr(self.strategy, "absgrad", False))
            loss = self.loss(out.rgb, target)
            if cfg.strategy == "mcmc":
                loss = loss + self.strategy.regularization(self.params)
            self.strategy.pre_backward(step, out.info)
            (loss / len(views)).backward()
            infos.append(out.info)
            total += loss.detach()
            sq += ((out.rgb.detach().clamp(0, 1) - target) ** 2).mean()
        seen = self.strategy.statistics(step, infos, grad_scale=len(views))
        pending = self.exchange(seen, total, sq)
        for name, opt in self.optimizers.items():
            pending[name].wait()
            opt.step()
            opt.zero_grad(set_to_none=True)
        pending["sums"].wait()
        pending["maxima"].wait()
        if cfg.refine_stop is None and fraction(step) >= 0.5 and self.strategy.refine_stop > step:
            self.strategy.refine_stop = step  # densify during the first half of the budget
        stats = self.strategy.post_backward(step, seen, self.params, self.optimizers, self.extent,
                                            means_lr=self.means_lr(fraction(step)), generator=self.gen)
        if stats:
            self.refinements.append({"step": step, **stats})
        mse = sq / len(views)
        return {"loss": total / len(views), "psnr": -10 * torch.log10(mse.clamp_min(1e-12)),
                "gaussians": len(self.params["means"]), "lr_means": self.optimizers["means"].param_groups[0]["lr"]}

    def exchange(self, seen: dict | None, *scalars: torch.Tensor) -> dict:
        """Start summing the gradients, the strategy's statistics and the step's `scalars` (0-d,
        summed in place) over the processes: what makes their optimiser steps and refinements
        identical. Returns what to wait for: each parameter's gradient by name (smaller ones first,
        so that their optimiser steps overlap the larger ones' transfer), 'sums' and 'maxima'."""
        group = self.group
        grads = dict(zip(self.params, group.gradients(self.params.values()) if group.world > 1 else []))
        pending = {k: group.start_all_reduce([grads[k]] if k in grads else [])
                   for k in sorted(self.params, key=lambda k: self.params[k].numel())}
        seen, how = seen or {}, self.strategy.REDUCE
        pending["sums"] = group.start_all_reduce([seen[k] for k in seen if how[k] == "sum"] + list(scalars))
        pending["maxima"] = group.start_all_reduce([seen[k] for k in seen if how[k] == "max"], "max")
        return pending

    def describe(self, s: dict) -> str:
        return f"loss {s['loss']:.4f}  PSNR {s['psnr']:.2f}  N {int(s['gaussians']):,}"

    def state_dict(self) -> dict:
        return {"order": torch.tensor(self.order, dtype=torch.long),
                "params": {k: v.detach().clone() for k, v in self.params.items()},
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "strategy": self.strategy.state_dict(), "generator": self.gen.get_state(),
                "refinements": self.refinements[-20:]}

    def load_state_dict(self, d: dict, source: Path) -> None:
        self.order = d["order"].tolist()
        lrs = self.learning_rates()
        for k in self.params:
            self.params[k] = torch.nn.Parameter(d["params"][k].clone().to(self.device))
            opt = gaussian_adam(self.params[k], lrs[k])
            opt.load_state_dict(d["optimizers"][k])
            self.optimizers[k] = opt
        self.strategy.load_state_dict(d["strategy"])
        self.gen.set_state(d["generator"])
        self.refinements = list(d.get("refinements", []))

    def meta(self) -> dict:
        return {"sh_degree": self.cfg.sh_degree, "antialiased": self.cfg.antialiased,
                "background": self.background.tolist()}

    # ------------------------------------------------------------------ outputs
    @torch.no_grad()
    def render(self, camera):
        return render_gaussians(self.params, camera, self.background, self.cfg.sh_degree, self.cfg.antialiased)

    def snapshot(self) -> dict:
        return self.params

    def export(self, run) -> dict:
        return export_splats(self.params, run)

    def summary(self, train_seconds: float) -> dict:
        return {"num_gaussians": len(self.params["means"]), "strategy": self.cfg.strategy, "init": self.init_info,
                "refinements": self.refinements[-20:]}

    # ------------------------------------------------------------------ checkpoint consumers
    @classmethod
    def view_content(cls, ckpt: dict, source: Path) -> dict:
        from scenes.gaussians import check_params

        return {"gaussians": check_params(ckpt["state"]["method"].get("params"), source)}

    @classmethod
    def export_checkpoint(cls, ckpt: dict, source: Path, fmt: str, out: Path | None, options) -> str:
        from scenes.gaussians import check_params, save_ply, save_splat

        params = check_params(ckpt["state"]["method"].get("params"), source / "checkpoints" / "last.pt")
        out = out or source / "exports" / f"scene.{fmt}"
        (save_ply if fmt == "ply" else save_splat)(params, out)
        return f"wrote {out} ({len(params['means']):,} Gaussians)"
