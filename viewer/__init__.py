"""Open3D viewer and offscreen rendering of every result the engine makes.

Empty until the viewer lands.
"""
