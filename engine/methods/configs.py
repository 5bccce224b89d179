"""The methods' configs: dataclasses that tyro turns into `lumen3d train <kind>` options and that
name their implementation. Light (no torch): the CLI imports them to build its help."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Optional

from engine.errors import check_option
from engine.runs import may_change
from engine.training.options import DatasetOptions, TrainOptions, finite

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

    def check(self) -> None:
        TrainOptions.check(self)
        DatasetOptions.check(self)
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

    def check(self) -> None:
        TrainOptions.check(self)
        DatasetOptions.check(self)
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
