"""`lumen3d train <scene type>` and `lumen3d export`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import tyro

from engine.train_gaussians import TrainGaussiansJob
from engine.train_nerf import MESH_THRESHOLD, TrainNerfJob


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
    """Export a trained scene: a Gaussian run or an Inria PLY as PLY or .splat; a NeRF run as a mesh."""

    source: tyro.conf.Positional[Path]
    """A `lumen3d train gaussians` or `train nerf` run directory, or a Gaussian-splat PLY."""
    format: Literal["ply", "splat", "mesh"] = "ply"
    """ply / splat: Gaussians; mesh: marching cubes on a NeRF's density with vertex colours."""
    out: Optional[Path] = None
    """Output file (default: <run>/exports/scene.<format> or mesh.ply, or beside the PLY); a mesh's
    suffix picks its format (.ply, .obj, .glb)."""
    mesh_resolution: int = 256
    mesh_threshold: float = MESH_THRESHOLD
    """Density level of the mesh surface."""
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
                raise InputError(src, "no checkpoints/last.pt: not a trained run")
            state = load_checkpoint(ckpt)
            is_nerf = "grid_density" in state
            if is_nerf != (self.format == "mesh"):
                raise InputError(src, "a NeRF run exports --format mesh" if is_nerf
                                 else "a Gaussian run exports --format ply or splat, not a mesh")
            if is_nerf:
                return self._mesh(state, ckpt, self.out or src / "exports" / "mesh.ply")
            params = state["params"]
            out = self.out or src / "exports" / f"scene.{self.format}"
        elif src.is_file():
            if self.format == "mesh":
                raise InputError(src, "--format mesh needs a NeRF run directory")
            params = load_ply(src)
            out = self.out or src.with_suffix(f".{self.format}")
        else:
            raise InputError(src, "not found")
        if out.resolve() == src.resolve():
            raise InputError(out, "would overwrite the input; choose another --out")
        (save_ply if self.format == "ply" else save_splat)(params, out)
        console.print(f"wrote {out} ({len(params['means']):,} Gaussians)")

    def _mesh(self, state: dict, ckpt: Path, out: Path) -> None:
        from engine.errors import InputError
        from engine.progress import console
        from engine.train_nerf import NerfModel, export_mesh

        if out.suffix.lower() not in (".ply", ".obj", ".glb", ".off", ".stl"):
            raise InputError(out, "a mesh is written as .ply, .obj, .glb, .off or .stl")
        if not 8 <= self.mesh_resolution <= 1024:
            raise InputError(None, "--mesh-resolution must be between 8 and 1024")
        info = export_mesh(NerfModel.from_checkpoint(state, ckpt), out, self.mesh_resolution, self.mesh_threshold)
        console.print(f"wrote {out} ({info['vertices']:,} vertices, {info['faces']:,} faces)")
