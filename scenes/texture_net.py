"""Paint-it's texture network: a Deep-Image-Prior "skip" U-Net that maps fixed noise to PBR texture
maps. A convolutional network is the prior: it paints smooth, coherent maps first and detail late,
so noisy Score Distillation gradients on a few views at a time still give clean textures (Paint-it,
CVPR 2024; the network is DIP's `skip`, Ulyanov et al. 2018).

Channels out (9): base colour (sRGB), occlusion-roughness-metallic, tangent-space normal. The normal
is tilted from +z by at most 45°, so the map can add relief but never turn a surface inside out.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
import torch.nn.functional as F

CHANNELS_OUT = 9
NOISE_CHANNELS = 32  # DIP's input depth for inpainting-sized images
NOISE_SCALE = 0.1  # DIP's U(0, 1)·0.1 input


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Module:
    """Reflection-padded convolution (no zero borders for the network to paint seams along)."""
    pad = (k - 1) // 2
    conv = nn.Conv2d(cin, cout, k, stride, bias=True)
    return nn.Sequential(nn.ReflectionPad2d(pad), conv) if pad else conv


def _norm_act(c: int) -> list[nn.Module]:
    # batch statistics always (DIP trains on one image; running averages would make the painted
    # map depend on whether the network is in train or eval mode)
    return [nn.BatchNorm2d(c, track_running_stats=False), nn.LeakyReLU(0.2, inplace=True)]


class _Level(nn.Module):
    """One scale: a skip branch at this resolution and a deeper branch through a strided
    convolution, concatenated, then convolutions at this resolution."""

    def __init__(self, cin: int, down: int, up: int, skip: int, deeper: nn.Module | None, deeper_out: int):
        super().__init__()
        self.skip = nn.Sequential(_conv(cin, skip, 1), *_norm_act(skip)) if skip else None
        self.down = nn.Sequential(_conv(cin, down, 3, 2), *_norm_act(down), _conv(down, down, 3), *_norm_act(down))
        self.deeper = deeper
        k = deeper_out if deeper is not None else down
        self.mix = nn.Sequential(nn.BatchNorm2d(skip + k, track_running_stats=False), _conv(skip + k, up, 3),
                                 *_norm_act(up), _conv(up, up, 1), *_norm_act(up))

    def forward(self, x: Tensor) -> Tensor:
        y = self.down(x)
        if self.deeper is not None:
            y = self.deeper(y)
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.skip is not None:
            y = torch.cat([self.skip(x), y], 1)
        return self.mix(y)


class SkipNet(nn.Module):
    """DIP's skip architecture: `scales` levels of `channels` channels (down and up) with 4-channel
    skips, bilinear upsampling, reflection padding, BatchNorm and LeakyReLU; a 1×1 convolution and
    a sigmoid out. Input and output sides must be divisible by 2**scales."""

    def __init__(self, cin: int = NOISE_CHANNELS, cout: int = CHANNELS_OUT, channels: int = 128, scales: int = 5,
                 skip: int = 4):
        super().__init__()
        level = None
        for i in reversed(range(scales)):
            level = _Level(cin if i == 0 else channels, channels, channels, skip, level, channels)
        self.body = level
        self.out = nn.Conv2d(channels, cout, 1)
        self.scales = scales

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.out(self.body(x)))


def decode_maps(out: Tensor) -> dict[str, Tensor]:
    """The network's (9, H, W) in [0, 1] as maps (H, W, 3): base_color (sRGB), orm (occlusion,
    roughness, metallic) and normal (tangent space, [0, 1]-encoded, z ≥ cos 45°).

    Occlusion is 1: as in nvdiffrec and Paint-it, the occlusion channel is not shaded, because a
    painted occlusion only trades against the base colour (their product is what a render shows);
    ambient occlusion belongs to the geometry."""
    x = out.permute(1, 2, 0)
    xy = 2 * x[..., 6:8] - 1
    n = F.normalize(torch.cat([xy, torch.ones_like(xy[..., :1])], -1), dim=-1)
    return {"base_color": x[..., 0:3], "orm": torch.cat([torch.ones_like(x[..., 3:4]), x[..., 4:6]], -1),
            "normal": 0.5 * (n + 1)}


class TextureNetwork(nn.Module):
    """`maps()`: the painted maps at `size`² from the network and its fixed noise (a buffer, so a
    checkpoint rebuilds exactly the same texture)."""

    def __init__(self, size: int = 512, channels: int = 128, scales: int = 5, seed: int = 0):
        super().__init__()
        if size % (1 << scales):
            raise ValueError(f"texture size {size} must be divisible by 2**{scales}")
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("noise", torch.rand(1, NOISE_CHANNELS, size, size, generator=g) * NOISE_SCALE)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = SkipNet(NOISE_CHANNELS, CHANNELS_OUT, channels, scales)
        self.size = size

    def forward(self) -> Tensor:
        """(9, H, W) in [0, 1]."""
        x = self.noise.contiguous(memory_format=torch.channels_last)
        return self.net(x)[0].float()

    def maps(self) -> dict[str, Tensor]:
        return decode_maps(self())
