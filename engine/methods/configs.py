"""The methods' configs: dataclasses that tyro turns into `lumen3d train <kind>` options and that
name their implementation. Light (no torch): the CLI imports them to build its help."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Optional

import tyro

from engine.errors import check_option
from engine.runs import may_change
from engine.training.options import DatasetOptions, ProcessOptions, TrainOptions, finite

MESH_THRESHOLD = 10.0  # σ of a NeRF's exported surface (an optical depth of ≈ 0.05 over one marching step on lego)


@dataclass(kw_only=True)
class GaussiansConfig(DatasetOptions, ProcessOptions, TrainOptions):
    """Train a 3D Gaussian Splatting scene from posed photos."""

    kind: ClassVar[str] = "gaussians"
    max_steps: int = 3000
    batch_size: int = 1
    """Views per step on each process (a step of N processes sees N × this many)."""
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
    """Last densification step (default: half of the budget, in steps or minutes)."""
    refine_every: int = 100
    reset_every: int = 3000
    grad_threshold: float = 0.0002
    cap_max: int = 300_000
    """MCMC: most Gaussians."""
    live_view: Literal["off", "png", "window"] = may_change("off")
    """Show the scene while it trains: rendered to <run>/renders/live.png, or in a window."""
    live_every: float = may_change(10.0)
    """Seconds between live-view updates (training only pays for a copy of the Gaussians)."""

    def check(self) -> None:
        TrainOptions.check(self)
        DatasetOptions.check(self)
        ProcessOptions.check(self)
        check_option(1 <= self.batch_size <= 1024, "batch_size", self.batch_size, "must be 1 to 1024")
        check_option(0 <= self.sh_degree <= 3, "sh_degree", self.sh_degree, "must be 0 to 3")
        for name in ("sh_degree_interval", "refine_every", "reset_every", "init_points", "cap_max"):
            check_option(getattr(self, name) >= 1, name, getattr(self, name), "must be 1 or more")
        check_option(self.init_points <= 50_000_000, "init_points", self.init_points, "must be at most 50000000")
        for name in ("lr_means", "lr_means_final", "lr_scales", "lr_quats", "lr_opacity", "lr_sh", "grad_threshold"):
            v = getattr(self, name)
            check_option(finite(v) and v > 0, name, v, "must be a positive number")
        check_option(finite(self.ssim_lambda) and 0 <= self.ssim_lambda <= 1, "ssim_lambda", self.ssim_lambda,
                     "must be between 0 and 1")
        check_option(finite(self.init_opacity) and 0 < self.init_opacity < 1, "init_opacity", self.init_opacity,
                     "must be between 0 and 1 (exclusive)")
        check_option(self.refine_start >= 0, "refine_start", self.refine_start, "must be 0 or more")
        check_option(self.refine_stop is None or self.refine_stop >= 0, "refine_stop", self.refine_stop,
                     "must be 0 or more")
        check_option(self.background is None or all(finite(c) and 0 <= c <= 1 for c in self.background),
                     "background", self.background, "must be three numbers between 0 and 1")
        check_option(finite(self.live_every) and self.live_every >= 0, "live_every", self.live_every,
                     "must be 0 or more seconds")


@dataclass(kw_only=True)
class NerfConfig(DatasetOptions, ProcessOptions, TrainOptions):
    """Train an instant-NGP-style NeRF (hash grid, occupancy-grid marching) on our kernels."""

    kind: ClassVar[str] = "nerf"
    max_steps: int = 2000
    checkpoint_every: int = may_change(250)
    video_frames: int = may_change(60)
    samples_per_step: int = 1 << 16
    """Target samples per step on each process: the number of rays adapts to how many samples each
    ray needs."""
    max_rays: int = 8192
    """Most rays per step on each process."""
    lr: float = 1e-2
    log2_table: int = 17
    grid_res: int = 128
    mesh_resolution: int = may_change(256)
    """Marching-cubes lattice per axis for exports/mesh.ply (0: no mesh)."""
    mesh_threshold: float = may_change(MESH_THRESHOLD)
    """Density level of the mesh surface."""
    random_background: bool = True
    """With RGBA photos (Blender scenes), train each ray over a random background colour."""

    def check(self) -> None:
        TrainOptions.check(self)
        DatasetOptions.check(self)
        ProcessOptions.check(self)
        check_option(1 <= self.samples_per_step <= 1 << 24, "samples_per_step", self.samples_per_step,
                     "must be 1 to 16777216")
        check_option(1 <= self.max_rays <= 1 << 22, "max_rays", self.max_rays, "must be 1 to 4194304")
        check_option(finite(self.lr) and self.lr > 0, "lr", self.lr, "must be a positive number")
        check_option(10 <= self.log2_table <= 24, "log2_table", self.log2_table, "must be 10 to 24")
        check_option(8 <= self.grid_res <= 512, "grid_res", self.grid_res, "must be 8 to 512")
        check_option(self.mesh_resolution == 0 or 8 <= self.mesh_resolution <= 1024, "mesh_resolution",
                     self.mesh_resolution, "must be 0 (no mesh) or 8 to 1024")
        check_option(finite(self.mesh_threshold) and self.mesh_threshold > 0, "mesh_threshold", self.mesh_threshold,
                     "must be a positive density")


@dataclass(kw_only=True)
class GuidanceOptions:
    """How renders are judged: Stable Diffusion from a user's folder, or a known object."""

    model: Optional[Path] = None
    """Stable Diffusion in diffusers' folder layout (model_index.json, unet/, vae/, text_encoder/,
    tokenizer/, scheduler/), read from disk only, never downloaded; or the weights file of a
    `lumen3d train guidance` run. Without it: the built-in object-world model."""
    guidance: Literal["auto", "stable-diffusion", "builtin", "known-object"] = "auto"
    """auto: Stable Diffusion when --model is a folder, else the built-in model, which knows only its
    small world of objects ("a red striped mushroom"; see docs/MODEL_CARD.md). known-object: the
    optimal denoiser of a built-in object's renders (the prompt is ignored), a guidance whose answer
    is known, for tests and benchmarks."""
    negative_prompt: str = ""
    guidance_scale: Optional[float] = None
    """Classifier-free guidance s in ε_u + s·(ε_c − ε_u) (diffusers' convention; default: DreamFusion's
    100 with Stable Diffusion, 7.5 with the built-in model)."""
    t_range: tuple[float, float] = (0.02, 0.98)
    """Timesteps t ~ U[min, max], as fractions of the model's (1000) steps."""
    t_anneal: Literal["none", "linear", "sqrt", "dreamgaussian"] = "none"
    """linear / sqrt: the range moves to --t-final over the run (sqrt: in √progress, Paint-it);
    dreamgaussian: one t per step, (1 − progress)·T within --t-range."""
    t_final: tuple[float, float] = (0.02, 0.5)
    weighting: Literal["sds", "uniform", "fantasia3d"] = "sds"
    """w(t): sds 1 − ᾱ, uniform 1, fantasia3d √ᾱ(1 − ᾱ)."""
    grad_clip: Optional[float] = None
    """Clip each element of the SDS gradient to ±this."""
    view_dependent: bool = True
    """Append "front / side / back / overhead view" to the prompt by each camera's direction."""
    front_threshold: float = 45.0
    back_threshold: float = 45.0
    overhead_threshold: float = 60.0
    precision: Literal["auto", "float32", "bf16", "fp16"] = "auto"
    """The diffusion model's arithmetic: auto is bf16 on CPUs with native bf16, fp16 on CUDA."""
    guidance_size: Optional[int] = None
    """Side of the image the VAE encodes (latents are 1/8 of it; default 512 on CUDA, 256 on a CPU)."""
    vae: Optional[Path] = None
    """A small VAE (diffusers' AutoencoderTiny folder) to encode renders instead of the model's own."""

    def guidance_kind(self) -> str:
        """--guidance with auto settled by --model."""
        if self.guidance != "auto":
            return self.guidance
        if self.model is None or Path(self.model).suffix == ".safetensors":
            return "builtin"
        return "stable-diffusion"

    def resolved_guidance(self) -> dict:
        """The guidance fields with auto and the defaults settled, for `dataclasses.replace`."""
        kind = self.guidance_kind()
        scale = self.guidance_scale if self.guidance_scale is not None else \
            (BUILTIN_SCALE if kind == "builtin" else 100.0)
        return {"guidance": kind, "guidance_scale": scale}

    def check(self) -> None:
        check_option(self.guidance_kind() != "stable-diffusion" or self.model is not None, "model", self.model,
                     "is needed: a Stable Diffusion folder in diffusers' layout (or --guidance known-object)")
        check_option(self.guidance_scale is None or (finite(self.guidance_scale) and self.guidance_scale > 0),
                     "guidance_scale", self.guidance_scale, "must be a positive number")
        for name in ("t_range", "t_final"):
            lo, hi = getattr(self, name)
            check_option(finite(lo) and finite(hi) and 0 <= lo <= hi <= 1, name, getattr(self, name),
                         "must be two fractions 0 <= min <= max <= 1")
        check_option(self.grad_clip is None or (finite(self.grad_clip) and self.grad_clip > 0), "grad_clip",
                     self.grad_clip, "must be a positive number")
        for name in ("front_threshold", "back_threshold"):
            v = getattr(self, name)
            check_option(finite(v) and 0 <= v <= 180, name, v, "must be 0 to 180 degrees")
        check_option(finite(self.overhead_threshold) and -90 <= self.overhead_threshold <= 90, "overhead_threshold",
                     self.overhead_threshold, "must be -90 to 90 degrees")
        check_option(self.guidance_size is None or (64 <= self.guidance_size <= 2048 and self.guidance_size % 8 == 0),
                     "guidance_size", self.guidance_size, "must be a multiple of 8 from 64 to 2048")


BUILTIN_SCALE = 7.5  # classifier-free guidance of the built-in model (7.5 beat 20 and 50 in 3D; docs/BENCHMARKS.md)
# the built-in model saw its world over a plain grey, at 64², in fields of view of 45–53°
# (NeRF: 800 steps of albedo at a coarser march, 1–3 minutes here; patterns do not form: docs/BENCHMARKS.md)
BUILTIN_DEFAULTS = {"gaussians": {"background": "grey", "fov": (49.0, 49.0), "render_size": 128},
                    "nerf": {"background": "grey", "fov": (49.0, 49.0), "render_size": 64, "max_steps": 800,
                             "march_steps": 256, "lr": 3e-3, "shading_start": 1.0}}

GENERATE_DEFAULTS = {
    # DreamGaussian's stage 1 (500 steps, elevations ±30°, radius 2.5, fov 49°) and threestudio's
    # DreamFusion (elevations −10…45°, fov 40…70°), at render sizes a CPU affords
    "gaussians": {"max_steps": 500, "render_size": 256, "elevation": (-30.0, 30.0), "fov": (49.0, 49.0)},
    "nerf": {"max_steps": 2000, "render_size": 64, "elevation": (-10.0, 45.0), "fov": (40.0, 70.0),
             "march_steps": 1024, "lr": 1e-2, "shading_start": 0.1},  # 1024 is scenes.nerf.MARCH_STEPS (no torch here)
}


@dataclass(kw_only=True)
class GenerateConfig(GuidanceOptions, TrainOptions):
    """Generate a 3D scene from a text prompt: Score Distillation Sampling on Gaussians
    (DreamGaussian) or on a NeRF (DreamFusion)."""

    prompt: tyro.conf.Positional[Annotated[str, tyro.conf.arg(metavar="PROMPT")]]
    """What to generate, e.g. "a DSLR photo of a red sports car"."""
    representation: Literal["gaussians", "nerf"] = "gaussians"
    max_steps: Optional[int] = None
    """Steps (default: 500 for Gaussians, 2000 for NeRF; 800 for NeRF with the built-in model)."""
    checkpoint_every: int = may_change(100)
    video_frames: int = may_change(60)
    batch: int = 1
    """Views per step (azimuths stratified over the batch)."""
    render_size: Optional[int] = None
    """Render side in pixels (default: Gaussians 256, reached through 1/4 and 1/2 of it as DreamGaussian
    does; NeRF 64)."""
    camera_distance: tuple[float, float] = (2.5, 3.0)
    elevation: Optional[tuple[float, float]] = None
    """Camera elevation range, degrees (default: Gaussians −30…30, NeRF −10…45)."""
    fov: Optional[tuple[float, float]] = None
    """Vertical field of view range, degrees (default: Gaussians 49, NeRF 40…70)."""
    background: Optional[Literal["random", "learned", "white", "grey"]] = None
    """What transparent pixels show in training: a random colour per view, a learned environment
    (a small network of the view direction; NeRF), white, or a random plain grey per view (default:
    random, grey with the built-in model, which saw its world over grey)."""
    # Gaussians
    init_points: int = 5000
    """Gaussians: random points in a sphere of radius 0.5 to start from."""
    grad_threshold: float = 0.01
    """Gaussians: densification threshold of the view-space gradient (DreamGaussian's)."""
    # NeRF
    lr: Optional[float] = None
    """NeRF: Adam's learning rate (default 1e-2; 3e-3 with the built-in model)."""
    log2_table: int = 16
    grid_res: int = 64
    blob_density: float = 10.0
    """NeRF: a density blob at the centre to start from (threestudio's Magic3D blob)."""
    blob_radius: float = 0.5
    march_steps: Optional[int] = None
    """NeRF: marching steps across the scene box's diagonal (default 1024, instant-NGP's; 256 with the
    built-in model, whose 64² renders are coarser than that)."""
    shading_start: Optional[float] = None
    """NeRF: part of the run with albedo only; then albedo / Lambertian / textureless at random
    (default 0.1; 1, albedo throughout, with the built-in model, whose world shows shading that
    the albedo then keeps)."""
    textureless_ratio: float = 0.4
    albedo_ratio: float = 0.2
    lambda_orient: tuple[float, float] = (10.0, 1000.0)
    """NeRF: orientation loss weight, rising linearly over the run."""
    lambda_sparsity: float = 1.0
    """NeRF: mean rendered opacity, so empty space stays empty."""
    mesh_resolution: int = may_change(128)
    """Marching-cubes lattice per axis for exports/mesh.ply (0: none)."""
    mesh_threshold: float = may_change(MESH_THRESHOLD)
    """NeRF: density of the mesh surface (Gaussians: their summed density at 1, DreamGaussian's)."""

    @property
    def kind(self) -> str:
        return f"text-{self.representation}"

    def resolved(self) -> "GenerateConfig":
        """The options with the guidance's and the representation's defaults filled in."""
        g = self.resolved_guidance()
        d = dict(GENERATE_DEFAULTS[self.representation], background="random")
        if g["guidance"] == "builtin":
            d.update(BUILTIN_DEFAULTS[self.representation])
        return dataclasses.replace(self, **g, **{k: v if getattr(self, k) is None else getattr(self, k)
                                                 for k, v in d.items()})

    def check(self) -> None:
        check_option(bool(self.prompt.strip()) or self.guidance == "known-object", "prompt", self.prompt,
                     "is empty: say what to generate")
        TrainOptions.check(self.resolved())
        GuidanceOptions.check(self)
        check_option(1 <= self.batch <= 64, "batch", self.batch, "must be 1 to 64")
        check_option(self.render_size is None or 16 <= self.render_size <= 2048, "render_size", self.render_size,
                     "must be 16 to 2048 pixels")
        lo, hi = self.camera_distance
        check_option(finite(lo) and finite(hi) and 1.0 <= lo <= hi, "camera_distance", self.camera_distance,
                     "must be two distances 1 <= near <= far (the object lies within 1 of the origin)")
        for name, bound in (("elevation", 89.0), ("fov", 179.0)):
            v = getattr(self, name)
            check_option(v is None or (finite(v[0]) and finite(v[1]) and -bound <= v[0] <= v[1] <= bound
                                       and (name != "fov" or v[0] > 0)), name, v,
                         f"must be two angles min <= max within {'0' if name == 'fov' else -bound}..{bound}")
        check_option(self.background != "learned" or self.representation == "nerf", "background", self.background,
                     "learned is a NeRF's environment; Gaussians train over random or white")
        check_option(self.march_steps is None or 64 <= self.march_steps <= 8192, "march_steps", self.march_steps,
                     "must be 64 to 8192")
        check_option(10 <= self.init_points <= 10_000_000, "init_points", self.init_points, "must be 10 to 10000000")
        for name in ("grad_threshold", "lr", "blob_radius"):
            v = getattr(self, name)
            check_option(v is None or (finite(v) and v > 0), name, v, "must be a positive number")
        check_option(10 <= self.log2_table <= 24, "log2_table", self.log2_table, "must be 10 to 24")
        check_option(8 <= self.grid_res <= 512, "grid_res", self.grid_res, "must be 8 to 512")
        for name in ("blob_density", "lambda_sparsity"):
            v = getattr(self, name)
            check_option(finite(v) and v >= 0, name, v, "must be 0 or more")
        for name in ("shading_start", "textureless_ratio", "albedo_ratio"):
            v = getattr(self, name)
            check_option(v is None or (finite(v) and 0 <= v <= 1), name, v, "must be between 0 and 1")
        check_option(self.textureless_ratio + self.albedo_ratio <= 1, "albedo_ratio", self.albedo_ratio,
                     "plus --textureless-ratio must be at most 1")
        check_option(all(finite(v) and v >= 0 for v in self.lambda_orient), "lambda_orient", self.lambda_orient,
                     "must be two weights, 0 or more")
        check_option(self.mesh_resolution == 0 or 8 <= self.mesh_resolution <= 1024, "mesh_resolution",
                     self.mesh_resolution, "must be 0 (no mesh) or 8 to 1024")
        check_option(finite(self.mesh_threshold) and self.mesh_threshold > 0, "mesh_threshold", self.mesh_threshold,
                     "must be a positive density")



PAINT_PRESETS = {
    # quality: Paint-it's recipe (4 views of 512² per step, a 512² texture, 1,500 steps); fast: the
    # recipe that keeps its known-answer quality at a fraction of the guidance calls on a CPU
    "fast": {"max_steps": 320, "views": 2, "render_size": 256, "texture_res": 256},
    "quality": {"max_steps": 1500, "views": 4, "render_size": 512, "texture_res": 512},
}


@dataclass(kw_only=True)
class PaintConfig(GuidanceOptions, TrainOptions):
    """Paint PBR texture maps (base colour, occlusion-roughness-metallic, normal) on a mesh from a
    text prompt: Paint-it's texture network optimised by Score Distillation through our mesh
    renderer."""

    kind: ClassVar[str] = "paint"
    mesh: tyro.conf.Positional[Annotated[Path, tyro.conf.arg(metavar="MESH")]]
    """An OBJ / PLY / GLB / glTF file; a run directory with a mesh in exports/ (a NeRF or text-to-3D
    export) or a fit-body run (its body.npz, frame --frame); a body.npz; or `anny`, the open body
    model's rest pose."""
    prompt: tyro.conf.Positional[Annotated[str, tyro.conf.arg(metavar="PROMPT")]]
    """What the surface should look like, e.g. "a wooden chair with a red velvet seat"."""
    preset: Literal["fast", "quality"] = "fast"
    """fast: 2 views of 256² per step, a 256² texture, 320 steps; quality: Paint-it's 4 views of
    512², a 512² texture, 1,500 steps. The options below override a preset's values."""
    max_steps: Optional[int] = None
    views: Optional[int] = None
    """Views per step: one from the front, the rest at random."""
    render_size: Optional[int] = None
    texture_res: Optional[int] = None
    """Side of the painted maps (a multiple of 2**scales)."""
    view_bank: int = 96
    """Random views whose rasterization is computed once and reused (the geometry is fixed); 0:
    fresh random views every step."""
    camera_distance: Optional[float] = None
    """Camera distance, with the mesh centred and scaled to extent 2 (default: Paint-it's 3.25; 6 with
    the built-in model, whose objects fill about half of its views)."""
    elevation: Optional[tuple[float, float]] = None
    """Elevation range of the random views, degrees (default: Paint-it's −60…60; −20…60 with the
    built-in model, as its world's views)."""
    fov: float = 45.0
    face_view: Literal["auto", "on", "off"] = "auto"
    """A close view of the face each step with its own prompt (auto: for body meshes)."""
    face_prompt: Optional[str] = None
    """Default: "the face of PROMPT"."""
    environment: Optional[Path] = None
    """Lighting: an equirectangular .hdr / .exr / image (default: a built-in sky)."""
    background: Optional[Literal["white", "random", "grey"]] = None
    """Behind the mesh in the guided views: white, a random colour or a random grey (default: white,
    grey with the built-in model)."""
    up: Literal["auto", "y", "z"] = "auto"
    """The mesh's up axis: y for mesh files (glTF's and OBJ's convention, front along +z), z for our
    run directories (front along +x). auto: by the input's kind."""
    frame: int = 0
    """Body fits: the frame of body.npz to paint (its pose; the global rotation is dropped)."""
    body_model: Optional[Path] = None
    """Body fits made with an SMPL-family model: that model's file."""
    max_faces: int = 1_000_000
    """Refuse larger meshes (decimate them first)."""
    lr: float = 5e-4
    lr_decay: float = 0.9
    """The learning rate is multiplied by this 15 times over the run (Paint-it: every 100 of 1,500 steps)."""
    grad_norm_clip: float = 10.0
    channels: int = 128
    """Texture network width (Paint-it: 128)."""
    scales: int = 5
    t_range: tuple[float, float] = (0.3, 0.98)
    t_anneal: Literal["none", "linear", "sqrt", "dreamgaussian"] = "sqrt"
    t_final: tuple[float, float] = (0.2, 0.5)
    checkpoint_every: int = may_change(50)
    snapshot_every: int = may_change(100)
    """Steps between renders/snapshots/step_NNNNN.png (0: none)."""
    video_frames: int = may_change(60)

    def resolved(self) -> "PaintConfig":
        d = PAINT_PRESETS[self.preset]
        g = self.resolved_guidance()
        builtin = g["guidance"] == "builtin"
        d = dict(d, background="grey" if builtin else "white", camera_distance=6.0 if builtin else 3.25,
                 elevation=(-20.0, 60.0) if builtin else (-60.0, 60.0))
        return dataclasses.replace(self, **g,
                                   **{k: v if getattr(self, k) is None else getattr(self, k) for k, v in d.items()})

    def check(self) -> None:
        r = self.resolved()
        check_option(bool(self.prompt.strip()) or self.guidance == "known-object", "prompt", self.prompt,
                     "is empty: say what to paint")
        TrainOptions.check(r)
        GuidanceOptions.check(self)
        check_option(1 <= r.views <= 16, "views", r.views, "must be 1 to 16")
        check_option(32 <= r.render_size <= 2048, "render_size", r.render_size, "must be 32 to 2048 pixels")
        check_option(1 <= self.scales <= 7, "scales", self.scales, "must be 1 to 7")
        check_option(8 <= self.channels <= 512, "channels", self.channels, "must be 8 to 512")
        step = 1 << self.scales
        check_option(r.texture_res % step == 0 and 32 <= r.texture_res <= 4096, "texture_res", r.texture_res,
                     f"must be a multiple of {step} (2**scales) from 32 to 4096")
        check_option(0 <= self.view_bank <= 4096, "view_bank", self.view_bank, "must be 0 to 4096")
        check_option(finite(r.camera_distance) and r.camera_distance >= 1.5, "camera_distance",
                     r.camera_distance, "must be 1.5 or more (the mesh is scaled to extent 2)")
        lo, hi = r.elevation
        check_option(finite(lo) and finite(hi) and -89 <= lo <= hi <= 89, "elevation", r.elevation,
                     "must be two angles -89 <= min <= max <= 89")
        check_option(finite(self.fov) and 5 <= self.fov <= 150, "fov", self.fov, "must be 5 to 150 degrees")
        check_option(self.frame >= 0, "frame", self.frame, "must be 0 or more")
        check_option(self.max_faces >= 1, "max_faces", self.max_faces, "must be 1 or more")
        for name in ("lr", "grad_norm_clip"):
            v = getattr(self, name)
            check_option(finite(v) and v > 0, name, v, "must be a positive number")
        check_option(finite(self.lr_decay) and 0 < self.lr_decay <= 1, "lr_decay", self.lr_decay,
                     "must be in (0, 1]")
        check_option(self.snapshot_every >= 0, "snapshot_every", self.snapshot_every, "must be 0 or more")


@dataclass(kw_only=True)
class GuidanceModelConfig(TrainOptions):
    """Train the built-in text-to-image diffusion model on the object world (renders made on the fly
    from the seed): the guidance `lumen3d generate` and `lumen3d paint` use when no --model is given."""

    kind: ClassVar[str] = "guidance"
    max_steps: int = 3200
    """The shipped model stopped at step 3,183, after 88 minutes of training on a 2-core CPU."""
    max_minutes: Optional[float] = may_change(120.0)
    """Stop after this many minutes of training, whichever comes first (the schedules follow it)."""
    checkpoint_every: int = may_change(200)
    video_frames: int = may_change(0)
    batch: int = 64
    lr: float = 5e-4
    warmup: int = 200
    """Steps of linear learning-rate warm-up; then a cosine decay to 10% over the budget."""
    ema: float = 0.999
    """Decay of the weights' exponential moving average (the exported weights)."""
    caption_dropout: float = 0.1
    """Part of the captions replaced by the empty one (classifier-free guidance)."""
    min_snr: float = 5.0
    """Min-SNR-γ loss weighting (γ; 0: plain ε MSE)."""
    channels: tuple[int, int, int] = (64, 128, 192)
    held_out: int = 48
    """(kind, colour, pattern) combinations never shown, to test composition."""
    sample_every: int = may_change(250)
    """Write a grid of samples to renders/samples/ every this many steps (0: at the end only)."""
    precision: Literal["auto", "float32", "bf16"] = "auto"

    def check(self) -> None:
        TrainOptions.check(self)
        check_option(1 <= self.batch <= 4096, "batch", self.batch, "must be 1 to 4096")
        for name in ("lr",):
            check_option(finite(self.lr) and self.lr > 0, name, self.lr, "must be a positive number")
        check_option(self.warmup >= 0, "warmup", self.warmup, "must be 0 or more")
        check_option(finite(self.ema) and 0 <= self.ema < 1, "ema", self.ema, "must be in [0, 1)")
        check_option(finite(self.caption_dropout) and 0 <= self.caption_dropout < 1, "caption_dropout",
                     self.caption_dropout, "must be in [0, 1)")
        check_option(finite(self.min_snr) and self.min_snr >= 0, "min_snr", self.min_snr, "must be 0 or more")
        check_option(all(8 <= c <= 1024 and c % 8 == 0 for c in self.channels), "channels", self.channels,
                     "must be three multiples of 8 from 8 to 1024")
        check_option(0 <= self.held_out <= 240, "held_out", self.held_out, "must be 0 to 240")
        check_option(self.sample_every >= 0, "sample_every", self.sample_every, "must be 0 or more")


@dataclass(kw_only=True)
class JudgeConfig(TrainOptions):
    """Train the object world's judge: a classifier of kind, colour and pattern, used only to
    evaluate text-to-3D results (`lumen3d bench text-to-3d`)."""

    kind: ClassVar[str] = "judge"
    max_steps: int = 1200
    checkpoint_every: int = may_change(250)
    video_frames: int = may_change(0)
    batch: int = 128
    lr: float = 2e-3

    def check(self) -> None:
        TrainOptions.check(self)
        check_option(1 <= self.batch <= 4096, "batch", self.batch, "must be 1 to 4096")
        check_option(finite(self.lr) and self.lr > 0, "lr", self.lr, "must be a positive number")
