"""`lumen3d paint MESH "a prompt"`: Paint-it on the one training loop, for mesh files, run
directories with a mesh, and body fits."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import InputError
from engine.methods.configs import PaintConfig

log = logging.getLogger("lumen3d")

OPEN_BODY = "anny"  # MESH naming the open body model's rest pose
RUN_MESHES = ("mesh.glb", "mesh.obj", "mesh.ply")  # what a run's exports/ may hold, in order of preference
UV_OVERLAP = 0.01  # share of texels two faces may share before the file's UVs are replaced


@dataclass(kw_only=True)
class PaintJob(PaintConfig):
    """Paint PBR textures on a mesh from a text prompt with a Stable Diffusion folder (--model)."""

    def run(self) -> dict:
        return run_paint(self)


def _body_mesh(path: Path, frame: int, body_model: Path | None):
    """A fit-body result's body at `frame`, in its model's canonical frame (global rotation and
    translation dropped: y up, facing +z)."""
    import torch

    from engine.io import read_npz
    from scenes.textured_mesh import TexturedMesh

    d = read_npz(path, "body fit")
    for k in ("betas", "pose", "model"):
        if k not in d:
            raise InputError(path, f"not a fit-body result (no {k!r}); give a run's body.npz")
    n = len(d["pose"])
    if frame >= n:
        raise InputError(path, f"has {n} frame(s); --frame {frame} is past the end")
    name = str(d["model"])
    if name == OPEN_BODY:
        from scenes.open_body import load_open_body

        model = load_open_body()
    else:
        if body_model is None:
            raise InputError(path, f"was fitted with the {name!r} model: give its file with --body-model PATH")
        from scenes.body_files import load_smpl

        model = load_smpl(body_model)
    b = d["betas"]  # one shape for the whole sequence (1, S) or one per frame (T, S)
    betas = torch.as_tensor(b[min(frame, len(b) - 1)][None], dtype=torch.float32)
    pose = torch.as_tensor(d["pose"][frame:frame + 1], dtype=torch.float32).clone()
    pose[:, 0] = 0
    with torch.no_grad():
        verts, _ = model(betas, pose)
    return TexturedMesh(verts[0].float(), model.faces.long())


def _rest_body():
    from scenes.open_body import load_open_body
    from scenes.textured_mesh import TexturedMesh

    model = load_open_body()
    return TexturedMesh(model.v_template.float(), model.faces.long())


def load_subject(cfg: PaintConfig):
    """The mesh to paint (`engine.methods.paint.PaintSubject`), checked, with usable UVs."""
    from engine.methods.paint import PaintSubject
    from scenes.mesh_files import read_textured_mesh

    path = Path(cfg.mesh)
    body = False
    up = "y"
    if str(cfg.mesh) == OPEN_BODY and not path.exists():
        mesh, body, source = _rest_body(), True, "the open body model's rest pose"
    elif path.is_dir():
        if (path / "body.npz").is_file():
            mesh, body, source = _body_mesh(path / "body.npz", cfg.frame, cfg.body_model), True, str(path / "body.npz")
        else:
            found = [path / "exports" / n for n in RUN_MESHES if (path / "exports" / n).is_file()]
            if not found:
                raise InputError(path, "holds no mesh to paint (exports/mesh.glb, .obj or .ply, or a fit-body "
                                       "body.npz); export one first, e.g. `lumen3d export RUN --format mesh`")
            mesh, source, up = read_textured_mesh(found[0]), str(found[0]), "z"
    elif path.suffix.lower() == ".npz":
        mesh, body, source = _body_mesh(path, cfg.frame, cfg.body_model), True, str(path)
    else:
        mesh, source = read_textured_mesh(path), str(path)
    if cfg.up != "auto":
        up = cfg.up
    where = Path(source) if not body or path.exists() else None
    if not len(mesh.faces):
        raise InputError(where, "has no faces: there is no surface to paint")
    if not bool(np.isfinite(mesh.vertices.numpy()).all()):
        raise InputError(where, "has non-finite (NaN or infinite) vertex positions")
    if len(mesh.faces) > cfg.max_faces:
        raise InputError(where, f"has {len(mesh.faces):,} faces, more than --max-faces {cfg.max_faces:,}: a painted "
                                "texture does not need them; decimate the mesh first (e.g. Blender's Decimate, "
                                "Open3D's simplify_quadric_decimation) or raise --max-faces")
    extent = (mesh.vertices.max(0).values - mesh.vertices.min(0).values).max()
    if not float(extent) > 0:
        raise InputError(where, "is a single point: there is no surface to paint")
    painted, why = _usable_uvs(mesh)
    return PaintSubject(painted, up, body, "file" if why is None else "xatlas", source, mesh, why or "")


def _usable_uvs(mesh):
    """The file's UVs when one texture can use them (one material, inside the unit square, charts
    that do not overlap); else a new layout from xatlas. Returns the mesh and why its UVs were
    replaced (None when they were not)."""
    from scenes.textured_mesh import unwrap, uv_overlap

    why = None
    if mesh.uvs is None:
        why = "has no UVs"
    elif len(mesh.parts) > 1:
        why = f"has {len(mesh.parts)} materials, each with its own UV square"
    elif bool(((mesh.uvs < -1e-4) | (mesh.uvs > 1 + 1e-4)).any()):
        why = "has UVs outside the unit square (tiled)"
    else:
        overlap = uv_overlap(mesh)[1]
        if overlap > UV_OVERLAP:
            why = f"has overlapping UV charts ({100 * overlap:.0f}% of covered texels)"
    if why is None:
        return mesh, None
    return unwrap(mesh.with_material(mesh.parts[0].material)), f"the mesh {why}"


def run_paint(cfg: PaintConfig) -> dict:
    """A new run directory (or the one to --resume) with config, log, checkpoints, snapshots, metrics,
    the turntable video and the painted mesh (exports/mesh.glb, exports/obj/)."""
    from engine.guidance import check_guidance_inputs
    from engine.methods.paint import PaintIt, environment_radiance
    from engine.runs import resolve_device, start_run
    from engine.training.loop import TrainingLoop

    cfg = cfg.resolved()
    cfg.check()
    check_guidance_inputs(cfg)
    radiance = environment_radiance(cfg.environment)  # a bad file is refused before the run directory
    if resolve_device(cfg.device) == "cuda":
        raise InputError(None, "painting on CUDA waits for the CUDA kernels to be verified on a GPU; use --device cpu")
    subject = load_subject(cfg)
    inputs = [Path(p) for p in (cfg.model, cfg.vae, cfg.environment, cfg.body_model) if p is not None]
    if Path(cfg.mesh).exists():
        inputs.append(Path(cfg.mesh))
    run = start_run("paint", cfg, inputs=inputs, resume=cfg.resume)
    if subject.uv_source == "xatlas":
        log.info("new UVs by xatlas for one painted texture (%s)", subject.uv_why)
    log.info("painting %s (%d faces, UVs from %s) as %r: %d steps of %d view%s at %d², texture %d²", subject.source,
             len(subject.mesh.faces), subject.uv_source, cfg.prompt, cfg.max_steps, cfg.views,
             "s" if cfg.views > 1 else "", cfg.render_size, cfg.texture_res)
    method = PaintIt(cfg, subject, device="cpu", radiance=radiance)
    loop = TrainingLoop(method, cfg, run)
    if cfg.snapshot_every:
        loop.hooks.append(_snapshots(run, cfg.snapshot_every))
    loop.resume()
    loop.train()
    return loop.finish()


def _snapshots(run, every: int):
    """A loop hook writing renders/snapshots/step_NNNNN.png every `every` steps and at the end."""
    from engine.io import write_png

    written = set()

    def hook(step: int, method, final: bool) -> None:
        if step and (step % every == 0 or final) and step not in written:
            write_png(method.snapshot_image(), run.path("renders", "snapshots", f"step_{step:05d}.png"))
            written.add(step)
    return hook
