"""Native ops (C++/OpenMP and CUDA), each with a plain-torch reference that is its specification.

So far: `kernels.splat_reference`, the torch reference of the Gaussian-splatting ops
(projection, SH colour, tile binning, rasterisation). The native kernels are tested against it.
"""
