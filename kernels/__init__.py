"""Native ops (C++/OpenMP and CUDA), each with a plain-torch reference that is its specification.

- `kernels.splat`: Gaussian splatting — `rasterize_gaussians` and its parts (projection, SH colour,
  tile binning, compositing), forward and backward, on CPU and CUDA tensors.
- `kernels.splat_reference`: the same ops in plain torch; the tests compare against it.
"""
