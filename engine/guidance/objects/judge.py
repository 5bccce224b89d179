"""The judge: a small convolutional classifier of the object world's kind, colour and pattern,
used only to evaluate (the guidance never sees it)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from engine.guidance.objects.world import COLOURS, KINDS, PATTERNS

HEADS = {"kind": len(KINDS), "colour": len(COLOURS), "pattern": len(PATTERNS)}


class Judge(nn.Module):
    """images (B, 3, 64, 64) in [0, 1] → logits {kind, colour, pattern}."""

    def __init__(self, width: int = 32):
        super().__init__()
        # a strided 5×5 stem: the 64² level would cost as much as all the rest together
        layers, c = [nn.Conv2d(3, width, 5, stride=2, padding=2), nn.BatchNorm2d(width), nn.ReLU(inplace=True)], width
        for i, out in enumerate((width, 2 * width, 4 * width, 8 * width)):
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True),
                       nn.Conv2d(out, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
            c = out
        self.features = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({k: nn.Linear(2 * c, n) for k, n in HEADS.items()})

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if images.shape[-1] != 64:
            images = F.interpolate(images, (64, 64), mode="bilinear", antialias=True, align_corners=False)
        h = self.features(2 * images - 1)
        h = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)
        return {k: head(h) for k, head in self.heads.items()}

    @torch.no_grad()
    def name(self, images: Tensor) -> dict[str, list[str]]:
        """What each image shows: {kind: [...], colour: [...], pattern: [...]}."""
        logits = self(images)
        names = {"kind": KINDS, "colour": list(COLOURS), "pattern": PATTERNS}
        return {k: [names[k][i] for i in v.argmax(1).tolist()] for k, v in logits.items()}
