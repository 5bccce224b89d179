"""`lumen3d view`: every result the engine makes, in an Open3D window or rendered offscreen to PNG
and MP4; the live view while training; the built-in photographed scene of `lumen3d demo`. The top
layer beside the jobs: it reads results and uses every layer below, and only jobs import it."""
