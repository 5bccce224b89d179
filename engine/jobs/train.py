"""`lumen3d train <kind>` and `lumen3d export`, dispatched through the registry."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import tyro

from engine.errors import InputError
from engine.methods.configs import MESH_THRESHOLD
from engine.registry import KINDS

log = logging.getLogger("lumen3d")


def _subcommands():
    entries = []
    for kind in KINDS.values():
        doc = (kind.config.__doc__ or "").split("\n")[0]
        entries.append(Annotated[kind.config, tyro.conf.subcommand(kind.name, description=doc)])
        entries += [Annotated[kind.config, tyro.conf.subcommand(a, description=f"Alias of `{kind.name}`.")]
                    for a in kind.aliases]
    return Union[tuple(entries)]


TrainCase = _subcommands()


@dataclass
class TrainJob:
    """Train a scene representation from posed photos (or the object world's guidance model and judge)."""

    case: tyro.conf.OmitSubcommandPrefixes[TrainCase]

    def check(self) -> None:
        self.case.check()

    def run(self):
        from engine.jobs import COMMAND_LINE

        return run_training(self.case, argv=list(COMMAND_LINE))


def run_training(cfg, run=None, argv: list[str] | None = None) -> dict | int:
    """Train `cfg` (a registered method's config) in a new run directory, or in `run` (the demo's):
    the method on the one loop, with the live view as a hook when asked for. With `--nproc N` (and
    `argv`, the command line) the same command runs on N processes, see `engine.training.launch`;
    under torchrun this process is one of several (`engine.training.distributed`)."""
    from engine.training.distributed import Processes, torchrun_env

    # checked before a run directory is made for nothing
    cfg.check()
    if getattr(cfg, "data", None) is not None and not Path(cfg.data).exists():
        raise InputError(cfg.data, "dataset not found")
    if cfg.device == "cuda":  # every part allocates on its tensors' device; the CUDA kernels are next
        raise InputError(None, "training on CUDA waits for the CUDA kernels to be verified on a GPU; use --device cpu")
    nproc = getattr(cfg, "nproc", 1)
    several = torchrun_env()
    if several and not hasattr(cfg, "nproc"):
        raise InputError(None, f"`lumen3d train {cfg.kind}` runs on one process; train gaussians or nerf under torchrun")
    if several and getattr(cfg, "live_view", "off") != "off":
        raise InputError(None, "--live-view shows one process's training; leave it off with several processes")
    dataset = None
    if getattr(cfg, "data", None) is not None:
        from engine.data import load_dataset

        dataset = load_dataset(cfg.data, cfg.format, cfg.downscale, strict=cfg.strict)
    if nproc > 1 and not several:
        if run is not None or argv is None:
            raise InputError(None, "--nproc needs the `lumen3d train` command line")
        from engine.training.launch import launch

        return launch(cfg, argv)  # the dataset was read once here, so bad input is said once
    group = Processes.start(cfg.device, getattr(cfg, "dist_timeout", 300.0))
    try:
        return _train(cfg, run, dataset, group)
    finally:
        group.close()


def _train(cfg, run, dataset, group) -> dict:
    import torch

    from engine.runs import seed_everything, start_run
    from engine.threads import set_threads
    from engine.training.distributed import default_threads
    from engine.training.loop import TrainingLoop

    threads = getattr(cfg, "threads", None)
    if threads or group.world > 1:
        set_threads(threads or default_threads(group.local_world))
    if group.main:
        try:
            if run is None:
                inputs = [cfg.data] if dataset is not None else []
                run = start_run(f"train-{cfg.kind}", cfg, inputs=inputs, resume=cfg.resume)
        except InputError as e:
            group.agree(str(e))
            raise
        group.agree(None)
        if group.world > 1:
            log.info("training on %d processes (%s), %d thread(s) each", group.world,
                     "gloo" if cfg.device != "cuda" else "NCCL", torch.get_num_threads())
        for line in dataset.warnings if dataset is not None else ():
            log.warning(line)
    else:
        group.agree(None)
        logging.getLogger("lumen3d").setLevel(logging.ERROR)  # rank 0 logs the run
        seed_everything(cfg.seed)  # as start_run did on rank 0: every process builds the same scene
    kwargs = {"group": group} if hasattr(cfg, "nproc") else {}
    method = KINDS[cfg.kind].method_class()(cfg, device="cpu", dataset=dataset, **kwargs)
    loop = TrainingLoop(method, cfg, run, group)
    loop.resume()
    live = _live_view(cfg, method, run)
    if live is not None:
        loop.hooks.append(lambda step, m, final: live.offer(m.snapshot(), step, final))
    if live is not None and cfg.live_view == "window":
        live.run_window(loop.train)
    else:
        if live is not None:
            live.start_offscreen()
        loop.train()
    extra = {"live_view": {"mode": cfg.live_view, **live.close()}} if live is not None else {}
    return loop.finish(extra)


def _live_view(cfg, method, run):
    """The viewer's live preview of a method that has something to draw (`Method.snapshot`)."""
    if getattr(cfg, "live_view", "off") == "off":
        return None
    from viewer.framing import camera_view
    from viewer.live import LivePreview

    frame = method.scene.frames[method.train_idx[0]]  # the first training camera, at most 640 wide
    i = frame.intrinsics
    scale = min(1.0, 640 / i.width)
    view = camera_view(frame.c2w, i, max(16, round(i.width * scale)), max(16, round(i.height * scale)))
    return LivePreview(view, cfg.live_every, run.path("renders", "live.png"), tuple(method.background.tolist()))


@dataclass
class ExportJob:
    """Export a trained scene: a Gaussian run or an Inria PLY as PLY or .splat; a NeRF run as a mesh; the
    object world's networks as weights."""

    source: tyro.conf.Positional[Path]
    """A `lumen3d train` run directory, or a Gaussian-splat PLY."""
    format: Literal["ply", "splat", "mesh", "weights"] = "ply"
    """ply / splat: Gaussians; mesh: marching cubes on a NeRF's density with vertex colours; weights:
    a `train guidance` or `train judge` run's network as safetensors (from its last checkpoint, so an
    unfinished run exports too)."""
    out: Optional[Path] = None
    """Output file (default: <run>/exports/scene.<format> or mesh.ply, or beside the PLY); a mesh's
    suffix picks its format (.ply, .obj, .glb)."""
    mesh_resolution: int = 256
    mesh_threshold: float = MESH_THRESHOLD
    """Density level of the mesh surface."""
    texture_size: int = 1024
    """A NeRF mesh written as .obj or .glb gets UVs (xatlas) and the field's colour baked into a
    texture of this size; 0 keeps vertex colours. PLY always has vertex colours."""
    debug: bool = False

    def check(self) -> None:
        from engine.errors import check_option
        from engine.training.options import finite

        check_option(8 <= self.mesh_resolution <= 1024, "mesh_resolution", self.mesh_resolution, "must be 8 to 1024")
        check_option(self.texture_size == 0 or 16 <= self.texture_size <= 8192, "texture_size", self.texture_size,
                     "must be 0 (vertex colours) or 16 to 8192")
        check_option(finite(self.mesh_threshold) and self.mesh_threshold > 0, "mesh_threshold", self.mesh_threshold,
                     "must be a positive density")

    def run(self) -> None:
        from engine.io import check_output
        from engine.progress import console
        from engine.registry import read_checkpoint, use_checkpoint

        src = self.source
        if self.out is not None:
            # a run's checkpoint, config and results are inputs too; its exports/ is where exports go
            check_output(self.out, [src] if not src.is_dir() else
                         [src / "checkpoints", src / "config.json", src / "metrics.json", src / "log.txt"])
        if src.is_dir():
            ckpt_path = src / "checkpoints" / "last.pt"
            if not ckpt_path.is_file():
                raise InputError(src, "no checkpoints/last.pt: not a trained run")
            ckpt, kind = read_checkpoint(ckpt_path)
            if self.format not in kind.exports:
                raise InputError(src, f"a {kind.name} run exports --format {' or '.join(kind.exports)}")
            console.print(use_checkpoint(ckpt_path, kind.method_class().export_checkpoint, ckpt, src, self.format,
                                         self.out, self))
        elif src.is_file():
            from scenes.gaussians import load_ply, save_ply, save_splat

            if self.format in ("mesh", "weights"):
                raise InputError(src, f"--format {self.format} needs a run directory")
            params = load_ply(src)
            out = self.out or src.with_suffix(f".{self.format}")
            check_output(out, [src])
            (save_ply if self.format == "ply" else save_splat)(params, out)
            console.print(f"wrote {out} ({len(params['means']):,} Gaussians)")
        else:
            raise InputError(src, "not found")
