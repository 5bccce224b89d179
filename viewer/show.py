"""One scene description from any results, shown offscreen (PNG, video) or in a window."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import InputError
from viewer.content import Cameras, Gaussians, Item, Mesh, Points, Sequence, load_content, up_vector
from viewer.framing import View, content_bounds
from viewer.geometry import drawables, resolve_splat_mode
from viewer.offscreen import Colours, Drawable

log = logging.getLogger("lumen3d")


@dataclass
class ShowScene:
    items: list[Item]
    up: np.ndarray
    splat_mode: str = "native"
    thumbnails: bool = True
    notes: list[str] = field(default_factory=list)
    offsets: dict[int, np.ndarray] = field(default_factory=dict)  # item index → translation (side by side)
    cameras: list[Cameras] = field(default_factory=list)  # all cameras, shown or not (--view-from)

    @property
    def extent(self) -> float:
        lo, hi = content_bounds(self.items)
        return float(np.linalg.norm(hi - lo))

    @property
    def sequence(self) -> Sequence | None:
        return next((it for it in self.items if isinstance(it, Sequence)), None)

    @property
    def num_frames(self) -> int:
        seq = self.sequence
        return seq.seq.num_frames if seq else 1

    @property
    def colours(self) -> Colours:
        """Open3D composites native splats unencoded into its image: with them, every colour
        goes in as a display value; without, shading is linear and the image encoded after."""
        native = self.splat_mode == "native" and any(isinstance(it, Gaussians) for it in self.items)
        return Colours(linear=not native)

    def drawables(self, frame: int | None = 0, colours: Colours | None = None) -> list[Drawable]:
        extent = self.extent
        colours = colours or self.colours
        out = []
        for i, it in enumerate(self.items):
            ds = drawables([it], self.splat_mode, extent, colours, frame, self.thumbnails)
            if i in self.offsets:
                for d in ds:
                    _translate(d, self.offsets[i])
            for d in ds:
                d.name = f"{i}: {d.name}"
            out += ds
        return out


def _translate(d: Drawable, t: np.ndarray) -> None:
    if d.is_model:
        for m in d.geometry.meshes:
            m.mesh.translate(t)
    else:
        d.geometry.translate(t)


def load_scene_for_view(paths: list[Path], splats: str = "auto", cameras: bool = True, points: bool = True,
                        thumbnails: bool = True, side_by_side: bool = False,
                        up: np.ndarray | None = None, offscreen: bool = True) -> ShowScene:
    if not paths:
        raise InputError(None, "give at least one file or folder to view")
    groups = [load_content(Path(p)) for p in paths]
    loaded = [it for g in groups for it in g]
    keep = lambda it: (cameras or not isinstance(it, Cameras)) and (points or not isinstance(it, Points))  # noqa: E731
    groups = [[it for it in g if keep(it)] for g in groups]
    items = [it for g in groups for it in g]
    if not items:
        raise InputError(Path(paths[0]), "nothing left to show (everything was switched off)")
    mode = resolve_splat_mode(splats, offscreen)
    up = up_vector(loaded) if up is None else np.asarray(up, np.float64) / np.linalg.norm(up)
    scene = ShowScene(items, up, mode, thumbnails, cameras=[it for it in loaded if isinstance(it, Cameras)])
    if any(isinstance(it, Gaussians) for it in items):
        scene.notes.append({"native": "splats: Open3D's Gaussian-splat renderer",
                            "raster": "splats: lumen3d's rasterizer (the training kernels), under Open3D's drawing",
                            "points": "splats: fallback — Gaussian centres coloured from the SH DC term"}[mode])
    if side_by_side and len(groups) > 1:
        scene.offsets = _side_by_side_offsets(groups, scene.up)
    kinds = ", ".join(sorted({type(it).__name__.lower() for it in items}))
    log.info("viewing %s: %s", ", ".join(str(p) for p in paths), kinds)
    return scene


def _side_by_side_offsets(groups: list[list[Item]], up: np.ndarray) -> dict[int, np.ndarray]:
    """Each path's content placed right of the previous one, with a 10% gap."""
    right = np.cross(up, [1.0, 0, 0] if abs(up[0]) < 0.9 else [0, 1.0, 0])
    right /= np.linalg.norm(right)
    offsets, cursor, idx = {}, 0.0, 0
    for g in groups:
        lo, hi = content_bounds(g)
        span = abs(float((hi - lo) @ right))
        centre = float(((lo + hi) / 2) @ right)
        for _ in g:
            offsets[idx] = right * (cursor + span / 2 - centre)
            idx += 1
        cursor += span * 1.1
    return offsets


def framing_items(scene: ShowScene) -> list[Item]:
    """Items moved by their side-by-side offsets, for framing."""
    if not scene.offsets:
        return scene.items
    out = []
    for i, it in enumerate(scene.items):
        t = scene.offsets.get(i, np.zeros(3))
        if isinstance(it, Points):
            out.append(Points(it.name, it.xyz + t, it.rgb))
        elif isinstance(it, Cameras):
            c2w = it.c2w.copy()
            c2w[:, :3, 3] += t
            out.append(Cameras(it.name, c2w, it.intrinsics, it.images))
        elif isinstance(it, Gaussians):
            out.append(Gaussians(it.name, {**it.params, "means": it.params["means"] + t}, it.source))
        elif isinstance(it, Mesh):
            from viewer.mesh_files import mesh_points

            v = mesh_points(it.path) + t
            out.append(Points(it.name, np.stack([v.min(0), v.max(0)])))
        else:
            out.append(it)
    return out


# ------------------------------------------------------------------------------------ offscreen
KEY = (1.0, 0.0, 1.0)  # overlay background: exact magenta, which shaded skin never is


def render_frames(scene: ShowScene, views: list[View], frames: list[int] | None = None, background=(1.0, 1.0, 1.0),
                  overlay: bool = True):
    """Yield one (H, W, 3) uint8 image per view (and per sequence frame, when given). A body
    sequence seen through its own camera is drawn over its photo, with the 2D keypoints."""
    from viewer.offscreen import OffscreenView, draw_keypoints

    width, height = views[0].width, views[0].height
    seq = scene.sequence
    frames = frames or [0] * len(views)
    over = bool(seq is not None and overlay and seq.seq.frames and all(_through_sequence_camera(seq, v) for v in views))
    # Open3D 0.20's splat pass drops splats in larger images (its warnings: footprints over
    # ~256 16×16 tiles are culled, and so are splats centred outside the image; measured
    # against our rasterizer, the demo scene at 1280×960 differs by 3.2/255 on average in one
    # piece and by 0.26/255 in pieces): native splats are drawn in 192×192 pieces, each
    # rendered with a 32-pixel margin.
    native = not scene.colours.linear
    raster = scene.splat_mode == "raster" and any(isinstance(it, Gaussians) for it in scene.items)
    ov = OffscreenView(width, height, KEY if over or raster else background, colours=scene.colours,
                       crop=(192, 192) if native else None, margin=32 if native else 0)
    try:
        # every frame's mesh is added once and shown in turn: removing and re-adding geometry
        # between renders can hang Filament
        everything = scene.drawables(frame=None)
        ov.add(everything)
        timed = [d.name for d in everything if d.time is not None]
        splats = _raster_params(scene) if scene.splat_mode == "raster" else None
        for view, t in zip(views, frames):
            for k, name in enumerate(timed):
                ov.renderer.scene.show_geometry(name, k == t)
            img = ov.render(view)
            if splats is not None:
                img = _under_splats(img, ov, view, splats, background, bool(everything))
            if over:
                key = (img == np.array(KEY) * 255).all(-1)
                img = np.where(key[..., None], _photo(seq.seq.frames[t], width, height), img)
                if seq.seq.keypoints2d is not None:
                    img = draw_keypoints(img, seq.seq.keypoints2d[t], seq.seq.skeleton, width / seq.seq.width)
            yield img
    finally:
        ov.close()


def _raster_params(scene: ShowScene) -> dict | None:
    """Every splat item's Gaussians (moved side by side) as one set, SH padded to the highest degree."""
    import torch

    items = [it for it in framing_items(scene) if isinstance(it, Gaussians)]
    if not items:
        return None
    k1 = max(it.params["sh_rest"].shape[1] for it in items)
    cat = lambda key: torch.cat([it.params[key].detach().float() for it in items])  # noqa: E731
    rest = torch.cat([torch.nn.functional.pad(it.params["sh_rest"].detach().float(),
                                              (0, 0, 0, k1 - it.params["sh_rest"].shape[1])) for it in items])
    return {**{k: cat(k) for k in ("means", "quats", "log_scales", "opacity_logits", "sh_dc")}, "sh_rest": rest}


def render_splats(params: dict, view: View, background):
    """Our rasterizer's image of `scenes.gaussians` parameters seen from `view` (no gradients)."""
    import torch

    from engine.cameras import Cameras
    from engine.rendering.gaussians import render_gaussians

    with torch.no_grad():
        return render_gaussians(params, Cameras.from_matrix(view.c2w, view.K, view.width, view.height),
                                torch.as_tensor(background, dtype=torch.float32))


def _under_splats(img: np.ndarray, ov, view: View, p: dict, background, has_geometry: bool) -> np.ndarray:
    """Our rasterizer's splats, with Open3D's drawing (rendered on the key colour) in front of
    them wherever that drawing is nearer than the splats' surface."""
    out = render_splats(p, view, background)
    splat = (out.rgb.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    if not has_geometry:
        return splat
    drawn = ~(img == np.array(KEY) * 255).all(-1)
    alpha = out.alpha.numpy().reshape(view.height, view.width)
    surface = out.depth.numpy().reshape(view.height, view.width) / np.maximum(alpha, 1e-6)
    z = ov.depth(view)
    front = drawn & ((alpha < 0.5) | (z < surface))
    return np.where(front[..., None], img, splat)


def _through_sequence_camera(seq: Sequence, view: View) -> bool:
    return seq.seq.c2w is not None and np.allclose(view.c2w, seq.seq.c2w, atol=1e-6)


def _photo(path: Path, width: int, height: int) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB").resize((width, height), Image.Resampling.BILINEAR))
    except (OSError, ValueError) as e:
        raise InputError(path, f"cannot read the sequence's frame ({e})") from None
