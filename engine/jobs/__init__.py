"""The jobs behind `lumen3d <job>`: each a config dataclass with a run() method.

Heavy libraries (pycolmap, open3d, torch) are imported inside run(), so `--help` and the
light jobs start fast.
"""

COMMAND_LINE: list[str] = []  # the arguments of this `lumen3d` call: what `--nproc` starts on each process
