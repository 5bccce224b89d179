"""A loaded dataset: frames (image, intrinsics, camera-to-world pose), splits, optional points."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.data.cameras import Intrinsics
from engine.data.images import composite, downscaled_copy, downscaled_size, file_has_alpha, image_size, read_image
from engine.errors import InputError

LLFF_HOLD = 8  # the literature's protocol: every 8th image (index % 8 == 0) is a test image


@dataclass
class Frame:
    """One photo. `c2w` is 4×4 camera-to-world with OpenCV axes; `intrinsics` describe the
    image as :meth:`Dataset.image` returns it (after `downscale` is applied to `image_path`)."""

    name: str
    image_path: Path
    intrinsics: Intrinsics
    c2w: np.ndarray
    downscale: float = 1.0

    @property
    def center(self) -> np.ndarray:
        return self.c2w[:3, 3]

    @property
    def forward(self) -> np.ndarray:
        """Unit viewing direction in world space."""
        return self.c2w[:3, 2]


@dataclass
class Dataset:
    root: Path
    format: str  # blender | nerfstudio | colmap | llff
    frames: list[Frame]
    splits: dict[str, list[int]]
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    points: np.ndarray | None = None  # (M, 3) float64 SfM points, world space
    point_colors: np.ndarray | None = None  # (M, 3) uint8
    near_far: np.ndarray | None = None  # (N, 2) per-frame depth bounds when the format has them
    extra: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what the loader skipped or ignored, for the run's log

    def split(self, name: str) -> list[Frame]:
        if name not in self.splits:
            raise InputError(self.root, f"dataset has no {name!r} split (has: {', '.join(self.splits)})")
        return [self.frames[i] for i in self.splits[name]]

    @property
    def has_alpha(self) -> bool:
        """Whether any photo has alpha (from the headers); then every photo is read with alpha
        (opaque where its file has none), so a mix of RGB and RGBA photos trains as one kind."""
        if "has_alpha" not in self.extra:
            self.extra["has_alpha"] = any(file_has_alpha(f.image_path) for f in self.frames)
        return self.extra["has_alpha"]

    def image_rgba(self, i: int) -> np.ndarray:
        """Frame i's pixels, float32 (H, W, 4) when the dataset's photos have alpha, else (H, W, 3),
        at the frame's resolution."""
        f = self.frames[i]
        img = read_image(downscaled_copy(f.image_path, f.downscale))
        if img.shape[:2] != (f.intrinsics.height, f.intrinsics.width):
            raise InputError(f.image_path, f"image is {img.shape[1]}x{img.shape[0]}, expected "
                                           f"{f.intrinsics.width}x{f.intrinsics.height}")
        if img.shape[-1] == 3 and self.has_alpha:
            img = np.concatenate([img, np.ones_like(img[..., :1])], -1)
        return img

    def image(self, i: int) -> np.ndarray:
        """Frame i's RGB pixels, float32 (H, W, 3); alpha is composited on `background`."""
        return composite(self.image_rgba(i), self.background)

    def downscaled(self, factor: float) -> "Dataset":
        """The same scene with images `factor` times smaller (copies cached outside the dataset)."""
        if not factor > 0:
            raise InputError(None, f"downscale factor must be positive, got {factor}")
        if factor == 1:
            return self
        frames = []
        for f in self.frames:
            w, h = downscaled_size(f.intrinsics.width, f.intrinsics.height, factor)
            frames.append(dataclasses.replace(f, intrinsics=f.intrinsics.scaled(w, h),
                                              downscale=f.downscale * factor))
        return dataclasses.replace(self, frames=frames)

    @property
    def distorted(self) -> bool:
        return any(f.intrinsics.has_distortion for f in self.frames)

    def undistorted(self) -> "Dataset":
        """The same scene seen by pinhole cameras: each distorted photo resampled (copies cached outside
        the dataset; see `engine.data.undistort`)."""
        from engine.data.images import downscaled_copy
        from engine.data.undistort import pinhole_for, undistorted_copy
        from engine.progress import track

        pinholes: dict[Intrinsics, Intrinsics] = {}
        frames = []
        for f in track(self.frames, "undistorting photos"):
            if not f.intrinsics.has_distortion:
                frames.append(f)
                continue
            try:
                dst = pinholes.setdefault(f.intrinsics, pinhole_for(f.intrinsics))
            except ValueError as e:
                raise InputError(f.image_path, str(e)) from None
            path = undistorted_copy(downscaled_copy(f.image_path, f.downscale), f.intrinsics, dst)
            frames.append(dataclasses.replace(f, image_path=path, intrinsics=dst, downscale=1.0))
        return dataclasses.replace(self, frames=frames, extra=dict(self.extra))

    def check_image_sizes(self) -> None:
        """Every image file's header must match its camera's size (one camera, one size).

        Loaders call this before any :meth:`downscaled`, while files and intrinsics agree 1:1.
        """
        for f in self.frames:
            w, h = image_size(f.image_path)
            exp = (f.intrinsics.width, f.intrinsics.height)
            if (w, h) != exp:
                raise InputError(f.image_path, f"image is {w}x{h} but its camera is {exp[0]}x{exp[1]} "
                                               "(images of one camera must have one size)")


def every_nth_split(n: int, hold: int = LLFF_HOLD) -> dict[str, list[int]]:
    test = [i for i in range(n) if i % hold == 0]
    train = [i for i in range(n) if i % hold != 0]
    return {"train": train, "test": test}
