"""What is optimised: Gaussians, radiance fields, meshes and textures, bodies.

Empty until the first trainer lands.
"""
