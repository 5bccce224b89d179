"""The one table of what the engine trains: `lumen3d train`, `export` and `view` dispatch on it,
by the name a run's checkpoint stores as its `kind`. Light (configs only): implementations are
imported when a job runs."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError
from engine.methods.configs import (GaussiansConfig, GenerateConfig, GuidanceModelConfig, JudgeConfig, NerfConfig,
                                   PaintConfig)


@dataclass(frozen=True)
class Kind:
    name: str  # `lumen3d train <name>` (or a generator's kind) and the checkpoint's kind
    config: type  # its options (a TrainOptions dataclass)
    method: str  # "module:Class" of its `engine.training.method.Method`
    exports: tuple[str, ...]  # the formats `lumen3d export` writes from its runs
    aliases: tuple[str, ...] = ()

    def method_class(self):
        module, cls = self.method.split(":")
        return getattr(importlib.import_module(module), cls)


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("gaussians", GaussiansConfig, "engine.methods.gaussians:GaussianSplatting", ("ply", "splat"),
         aliases=("3dgs",)),
    Kind("nerf", NerfConfig, "engine.methods.nerf:Nerf", ("mesh",)),
    # the object world's networks: the built-in guidance model and the judge of its benchmark
    Kind("guidance", GuidanceModelConfig, "engine.methods.objects:GuidanceModelTraining", ("weights",)),
    Kind("judge", JudgeConfig, "engine.methods.objects:JudgeTraining", ("weights",)),
)}
# what `lumen3d generate` makes, by --representation: runs that export and view like the others
GENERATORS: dict[str, Kind] = {k.name: k for k in (
    Kind("text-gaussians", GenerateConfig, "engine.methods.text_gaussians:TextToGaussians", ("ply", "splat", "mesh")),
    Kind("text-nerf", GenerateConfig, "engine.methods.text_nerf:TextToNerf", ("mesh",)),
)}
# what `lumen3d paint` makes: its results are the exported textured mesh
PAINTERS: dict[str, Kind] = {"paint": Kind("paint", PaintConfig, "engine.methods.paint:PaintIt", ())}


def kind_of(ckpt: dict, source: Path) -> Kind:
    name = ckpt.get("kind")
    known = {**KINDS, **GENERATORS, **PAINTERS}
    if name not in known:
        raise InputError(source, f"checkpoint of unknown kind {name!r} (known: {', '.join(known)})")
    return known[name]


def read_checkpoint(path: Path) -> tuple[dict, Kind]:
    """A run's checkpoint, loaded safely (`engine.io.load_checkpoint`), in the current layout, with
    its kind. Checkpoints of lumen3d 0.x before the one loop are converted on the fly."""
    from engine.io import load_checkpoint

    ckpt = _upgrade_legacy(load_checkpoint(path))
    kind = kind_of(ckpt, path)
    if not isinstance(ckpt.get("state"), dict) or not isinstance(ckpt["state"].get("method"), dict) \
            or not isinstance(ckpt.get("meta"), dict):
        raise InputError(path, "not a lumen3d checkpoint (no meta or state)")
    return ckpt, kind


def use_checkpoint(path: Path, fn, *args):
    """Call fn (a method's export_checkpoint or view_content) on a checkpoint, turning what a
    checkpoint that loads but lacks keys or has wrong shapes raises into a line naming it."""
    try:
        return fn(*args)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as e:
        raise InputError(path, f"checkpoint is incomplete or damaged ({e.__class__.__name__}: {str(e)[:100]})") \
            from None


def _upgrade_legacy(d: dict) -> dict:
    """The layouts of the two trainers before the one loop (no 'kind'): Gaussians kept their
    parameters at the top, NeRF its field, grid and description beside them."""
    if "kind" in d or "params" not in d:
        return d
    if "grid_density" in d and isinstance(d.get("model"), dict) and isinstance(d["params"], dict):
        grid = {"density": d["grid_density"], "bits": d["grid_bits"]}
        return {"kind": "nerf", "meta": d["model"], "config": {},
                "state": {"loop": d.get("state", {}), "method": {"field": d["params"], "grid": grid}}}
    return {"kind": "gaussians", "meta": {}, "config": {}, "state": {"loop": {}, "method": {"params": d["params"]}}}
