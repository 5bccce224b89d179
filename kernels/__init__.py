"""Native ops (C++/OpenMP and CUDA) with a torch reference for each.

Empty until the Gaussian-splatting and NeRF kernels land; kept so the layout of the
design card holds from the first commit.
"""
