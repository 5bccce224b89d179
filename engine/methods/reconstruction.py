"""What reconstruction methods share: a posed dataset with its train and test splits, evaluation
targets and the video path around the capture."""
from __future__ import annotations

import numpy as np
import torch

from engine.cameras import Cameras, camera_path
from engine.errors import InputError
from engine.rendering.background import composite
from engine.training.method import Method


class ReconstructionMethod(Method):
    """Loads `cfg.data` (`engine.training.options.DatasetOptions`); subclasses set
    `self.background` (3,) before evaluation. `group`: the processes training together
    (`engine.training.distributed`), one by default."""

    def __init__(self, cfg, dataset=None, group=None):
        from engine.data import load_dataset
        from engine.training.distributed import Processes

        self.cfg = cfg
        self.group = group or Processes()
        self.scene = dataset if dataset is not None else load_dataset(cfg.data, cfg.format, cfg.downscale, strict=cfg.strict)
        self.train_idx = self.scene.splits["train"] if "train" in self.scene.splits else []
        self.test_idx = self.scene.splits.get("test", [])
        if not self.train_idx:
            raise InputError(cfg.data, "the dataset has no training images")
        self.train_c2ws = np.stack([self.scene.frames[i].c2w for i in self.train_idx])

    def camera(self, i: int) -> Cameras:
        """Frame i's camera."""
        return Cameras.from_frames([self.scene.frames[i]], self.device)

    def test_views(self):
        bg = np.asarray(self.background.tolist(), np.float32)
        return [(self.camera(i), lambda i=i: torch.from_numpy(composite(self.scene.image_rgba(i), bg)))
                for i in self.test_idx]

    def video_cameras(self, frames: int) -> Cameras:
        intr = self.scene.frames[self.train_idx[0]].intrinsics
        return Cameras.from_c2w(camera_path(self.train_c2ws, frames), intr, self.device)
