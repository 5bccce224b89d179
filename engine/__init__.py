"""lumen3d engine: data and cameras, jobs, training loops, the `lumen3d` CLI."""
from engine._version import __version__

__all__ = ["__version__"]
