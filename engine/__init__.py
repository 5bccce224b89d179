"""lumen3d engine: data and cameras, rendering, the training loop and its methods, the registry,
jobs and the `lumen3d` CLI (the layers: docs/ARCHITECTURE.md)."""
from engine._version import __version__

__all__ = ["__version__"]
