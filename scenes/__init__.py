"""What is optimised, as parameters and the pure functions on them: 3D Gaussians and their files
(`gaussians.py`), radiance fields with their occupancy grid and ray renderer (`nerf.py`) and meshes of
them (`nerf_mesh.py`), bodies (`body.py`: linear blend skinning; `open_body.py`, `body_files.py`: the
models) and body sequences (`body_sequence.py`). Imports data and kernels only."""
