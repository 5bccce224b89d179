"""The methods' configs: dataclasses that tyro turns into `lumen3d train <kind>` options and that
name their implementation. Light (no torch): the CLI imports them to build its help."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Optional

from engine.runs import may_change
from engine.training.options import DatasetOptions, TrainOptions

MESH_THRESHOLD = 10.0  # σ of a NeRF's exported surface (an optical depth of ≈ 0.05 over one marching step on lego)


@dataclass(kw_only=True)
class GaussiansConfig(DatasetOptions, TrainOptions):
    """Train a 3D Gaussian Splatting scene from posed photos."""

    kind: ClassVar[str] = "gaussians"
    max_steps: int = 3000
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


@dataclass(kw_only=True)
class NerfConfig(DatasetOptions, TrainOptions):
    """Train an instant-NGP-style NeRF (hash grid, occupancy-grid marching) on our kernels."""

    kind: ClassVar[str] = "nerf"
    max_steps: int = 2000
    checkpoint_every: int = may_change(250)
    video_frames: int = may_change(60)
    samples_per_step: int = 1 << 16
    """Target samples per step: the number of rays adapts to how many samples each ray needs."""
    max_rays: int = 8192
    lr: float = 1e-2
    log2_table: int = 17
    grid_res: int = 128
    mesh_resolution: int = may_change(256)
    """Marching-cubes lattice per axis for exports/mesh.ply (0: no mesh)."""
    mesh_threshold: float = may_change(MESH_THRESHOLD)
    """Density level of the mesh surface."""
    random_background: bool = True
    """With RGBA photos (Blender scenes), train each ray over a random background colour."""
