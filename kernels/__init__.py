"""Native ops (C++/OpenMP and CUDA, one math header for both), each with a plain-torch reference
that is its specification.

- `kernels.splat`: Gaussian splatting — `rasterize_gaussians` and its parts (projection, SH colour,
  tile binning, compositing), forward and backward; reference `kernels.splat_reference`.
- `kernels.nerf`: radiance fields — `hash_encode`, `march_rays` (occupancy-grid marching) and
  `composite` (packed samples → colour, opacity, depth); reference `kernels.nerf_reference`.
- `kernels.mesh`: triangle meshes, nvdiffrast's interface — `rasterize`, `interpolate`, `texture`
  (mipmapped) and `antialias` (silhouette edges, gradients to vertices); reference `kernels.mesh_reference`.
"""
