"""`lumen3d train <scene type>` and `lumen3d export`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import tyro

from engine.train_gaussians import TrainGaussiansJob
from engine.train_nerf import TrainNerfJob


@dataclass
class TrainJob:
    """Train a scene representation from posed photos."""

    case: tyro.conf.OmitSubcommandPrefixes[Union[Annotated[TrainGaussiansJob, tyro.conf.subcommand("gaussians")],
                                                 Annotated[TrainGaussiansJob, tyro.conf.subcommand(
                                                     "3dgs", description="Alias of `gaussians`.")],
                                                 Annotated[TrainNerfJob, tyro.conf.subcommand("nerf")]]]

    def run(self):
        return self.case.run()


@dataclass
class ExportJob:
    """Export a trained Gaussian scene (a run directory or an Inria PLY) as PLY or .splat."""

    source: tyro.conf.Positional[Path]
    """A `lumen3d train gaussians` run directory, or a Gaussian-splat PLY."""
    format: Literal["ply", "splat"] = "ply"
    out: Optional[Path] = None
    """Output file (default: <run>/exports/scene.<format>, or beside the PLY)."""
    debug: bool = False

    def run(self) -> None:
        from engine.errors import InputError
        from engine.io import load_checkpoint
        from engine.progress import console
        from scenes.gaussians import load_ply, save_ply, save_splat

        src = self.source
        if src.is_dir():
            ckpt = src / "checkpoints" / "last.pt"
            if not ckpt.is_file():
                raise InputError(src, "no checkpoints/last.pt: not a trained Gaussian run")
            params = load_checkpoint(ckpt)["params"]
            out = self.out or src / "exports" / f"scene.{self.format}"
        elif src.is_file():
            params = load_ply(src)
            out = self.out or src.with_suffix(f".{self.format}")
        else:
            raise InputError(src, "not found")
        if out.resolve() == src.resolve():
            raise InputError(out, "would overwrite the input; choose another --out")
        (save_ply if self.format == "ply" else save_splat)(params, out)
        console.print(f"wrote {out} ({len(params['means']):,} Gaussians)")
