"""Training curves: scalars to TensorBoard event files in the run directory and, at the end,
drawn to renders/curves.png, so a user can look instead of reading JSON."""
from __future__ import annotations

import logging
import math
from pathlib import Path

log = logging.getLogger("lumen3d")


class Curves:
    """Scalars by step. The history travels in checkpoints, so a resumed run draws its whole
    curve; TensorBoard drops the events a killed run logged after its last checkpoint
    (`purge_step`)."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.history: dict[str, list[tuple[int, float]]] = {}
        self._writer = None
        self._writer_failed = False

    def _tensorboard(self, purge_step: int | None = None):
        if self._writer is None and not self._writer_failed:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:  # tensorboard is a dependency; a broken install still trains
                log.warning("no TensorBoard event files: %s", e)
                self._writer_failed = True
                return None
            self._writer = SummaryWriter(str(self.log_dir), purge_step=purge_step)
        return self._writer

    def resume(self, history: dict, step: int) -> None:
        self.history = {k: [(int(s), float(v)) for s, v in pts if s <= step] for k, pts in history.items()}
        self._tensorboard(purge_step=step + 1)

    def add(self, step: int, scalars: dict[str, float]) -> None:
        writer = self._tensorboard()
        for k, v in scalars.items():
            v = float(v)
            if not math.isfinite(v):
                continue
            self.history.setdefault(k, []).append((step, v))
            if writer is not None:
                writer.add_scalar(f"train/{k}", v, step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def state_dict(self) -> dict:
        return {k: [list(p) for p in pts] for k, pts in self.history.items()}

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def plot(self, path: Path) -> Path | None:
        """One panel per scalar against the step, written atomically as PNG."""
        if not self.history:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from engine.io import atomic_path

        keys = list(self.history)
        cols = min(3, len(keys))
        rows = math.ceil(len(keys) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
        for ax, k in zip(axes.flat, keys):
            steps, values = zip(*self.history[k])
            ax.plot(steps, values, lw=1.2)
            ax.set_title(k, fontsize=10)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(keys):]:
            ax.axis("off")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        return path
