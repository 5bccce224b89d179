"""`lumen3d fit-body`: a body mesh fitted to every frame of a video, a folder of frames or a photo."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import tyro

from engine.errors import InputError
from engine.runs import RunOptions, start_run

log = logging.getLogger("lumen3d")

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}


@dataclass
class FitBodyJob(RunOptions):
    """Fit a parametric body to 2D keypoints (SMPLify; all frames together with temporal terms)."""

    input: tyro.conf.Positional[Optional[Path]] = None
    """A video file, a folder of frames, or one photo."""
    keypoints: Optional[Path] = None
    """2D keypoints: OpenPose BODY_25 JSON (file or folder), COCO keypoint JSON, or lumen3d keypoints.json.
    Default: detect them with MediaPipe (the optional 'detect' extra)."""
    body_model: Optional[Path] = None
    """An SMPL / SMPL+H / SMPL-X file (.pkl or .npz) you have; default: the open model (Anny)."""
    pose_prior: Optional[Path] = None
    """SMPLify's GMM pose prior (gmm_08.pkl) for an SMPL model; default: joint limits on the model's joints."""
    focal: Optional[float] = None
    """Focal length in pixels; default: from EXIF, else the longer image side (a 53° view)."""
    fps: Optional[float] = None
    """Frames per second taken from a video (default: every frame)."""
    max_frames: Optional[int] = None
    temporal: bool = True
    """One shape for all frames and smooth motion; --no-temporal fits every frame alone."""
    meshes: Literal["none", "obj", "ply"] = "none"
    """Also write one mesh per frame (the whole sequence is always in sequence.npz)."""
    render_overlay: bool = True
    """Render overlay.mp4: the fitted mesh over the frames, with the keypoints."""
    resume: bool = False
    """Reuse the keypoints this run directory already holds (detection is the slow part)."""

    def check(self) -> None:
        import math

        from engine.errors import check_option

        RunOptions.check(self)
        for name in ("focal", "fps"):
            v = getattr(self, name)
            check_option(v is None or (math.isfinite(v) and 0 < v <= 1e6), name, v, "must be a positive number")
        check_option(self.max_frames is None or self.max_frames >= 1, "max_frames", self.max_frames,
                     "must be 1 or more")

    def run(self) -> None:
        from engine.body_fit import FitConfig, body_vertices, fit, project
        from engine.data.keypoints import KEYPOINTS, SKELETON, read_keypoints, write_keypoints
        from engine.progress import progress

        if self.input is None:
            raise InputError(None, "give a video, a folder of frames or a photo")
        if not self.input.exists():
            raise InputError(self.input, "not found (give a video, a folder of frames or a photo)")
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError(None, f"--max-frames must be at least 1, got {self.max_frames}")
        model = self._model()
        gmm = self._gmm(model)
        run = start_run("fit-body", self, inputs=[p for p in (self.input, self.keypoints) if p is not None],
                        resume=self.resume)
        frames, fps = self._frames(run)
        width, height = _frame_size(frames)
        kp_path = run.path("keypoints.json")
        if self.keypoints is not None:
            kp, names = read_keypoints(self.keypoints)
            kp = _match_frames(kp, names, frames, self.keypoints)
            source = str(self.keypoints)
        elif self.resume and kp_path.is_file():
            kp, _ = read_keypoints(kp_path)
            if len(kp) != len(frames):
                raise InputError(kp_path, f"{len(kp)} frames of keypoints for {len(frames)} frames; rerun without --resume")
            source = "resumed"
        else:
            kp = _detect(frames)
            source = "mediapipe BlazePose"
        write_keypoints(kp_path, kp, [f.name for f in frames], width, height, source)
        focal, focal_source = self._focal(frames[0], width, height)
        K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1.0]])
        cfg = FitConfig(temporal=self.temporal)
        n_stages = len(cfg.start_yaws_deg) + len(cfg.pose_weights) - 1
        with progress() as p:
            task = p.add_task(f"fitting {len(frames)} frames", total=n_stages)
            try:
                res = fit(model, kp, K, cfg, gmm=gmm, progress=lambda: p.advance(task))
            except ValueError as e:
                raise InputError(self.keypoints or kp_path, str(e)) from None
        log.info("fitted %d frames (%d with a detection) in %.1f s (%.1f frames/s); pose prior: %s",
                 len(frames), int(res.detected.sum()), res.seconds, len(frames) / res.seconds, res.prior)
        self._write(run, model, res, kp, K, frames, fps, width, height, focal_source, project, body_vertices,
                    KEYPOINTS, SKELETON)

    # --- inputs -------------------------------------------------------------------------------------------
    def _model(self):
        if self.body_model is not None:
            from scenes.body_files import load_smpl

            return load_smpl(self.body_model)
        from scenes.open_body import load_open_body

        return load_open_body()

    def _gmm(self, model):
        if self.pose_prior is None:
            return None
        from scenes.body_files import load_gmm_prior

        gmm = load_gmm_prior(self.pose_prior)
        if gmm["means"].shape[1] != 3 * (model.num_joints - 1):
            raise InputError(self.pose_prior, f"the prior has {gmm['means'].shape[1]} dimensions; the body model's "
                                              f"pose has {3 * (model.num_joints - 1)} (SMPLify's GMM is for SMPL)")
        return gmm

    def _frames(self, run) -> tuple[list[Path], float]:
        from engine.data.images import IMAGE_SUFFIXES, list_images

        src = self.input
        if src.is_dir():
            frames, fps = list_images(src), self.fps or 30.0
            if not frames:
                raise InputError(src, "no images in this folder (.png, .jpg, .jpeg, .bmp, .tif, .webp)")
        elif src.suffix.lower() in VIDEO_SUFFIXES:
            frames, fps = _extract_frames(src, self.fps, run.path("frames"))
        elif src.suffix.lower() in IMAGE_SUFFIXES:
            frames, fps = [src], self.fps or 30.0
        else:
            raise InputError(src, f"not a video ({', '.join(sorted(VIDEO_SUFFIXES))}), image or folder")
        return frames[:self.max_frames] if self.max_frames else frames, fps

    def _focal(self, first: Path, width: int, height: int) -> tuple[float, str]:
        from engine.body_fit import default_focal

        if self.focal is not None:
            if not self.focal > 0:
                raise InputError(None, f"--focal must be positive, got {self.focal}")
            return float(self.focal), "given"
        f35 = _exif_focal_35mm(first)
        if f35:
            return f35 / 36.0 * max(width, height), "EXIF (35 mm equivalent)"
        return default_focal(width, height), "default (53° across the longer side)"

    # --- outputs ------------------------------------------------------------------------------------------
    def _write(self, run, model, res, kp, K, frames, fps, width, height, focal_source, project, body_vertices,
               KEYPOINTS, SKELETON) -> None:
        import torch

        from engine.io import atomic_path
        from scenes.body_sequence import BodySequence, save_sequence

        T = len(frames)
        m = model.to(torch.float64)
        with torch.no_grad():
            joints, k3 = m.joints_and_keypoints(res.betas, res.pose, res.transl)
        uv = project(k3, torch.as_tensor(K).expand(T, 3, 3)).numpy()
        conf = kp[..., 2] >= 0.1
        reproj = np.linalg.norm(uv - kp[..., :2], axis=-1)
        with atomic_path(run.path("body.npz")) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, betas=res.betas.float().numpy(), pose=res.pose.float().numpy(),
                         transl=res.transl.float().numpy(), joints3d=joints.float().numpy(),
                         keypoints3d=k3.float().numpy(), keypoints2d_fit=uv.astype(np.float32),
                         detected=res.detected, K=K, width=np.int64(width), height=np.int64(height),
                         fps=np.float64(fps), model=np.array(model.name), joint_names=np.array(model.joint_names),
                         keypoint_names=np.array(KEYPOINTS), prior=np.array(res.prior),
                         frames=np.array([f.name for f in frames]))
        verts = body_vertices(model, res)
        faces = model.faces.numpy()
        seq_path = run.path("sequence.npz")
        save_sequence(BodySequence(verts, faces, fps, kp.astype(np.float32), SKELETON, K, width, height,
                                   np.eye(4), frames), seq_path)
        if self.meshes != "none":
            import trimesh

            from engine.progress import track

            for t in track(range(T), f"writing {T} meshes"):
                out = run.path("meshes", f"{frames[t].stem}.{self.meshes}")
                out.parent.mkdir(exist_ok=True)
                with atomic_path(out) as tmp:
                    trimesh.Trimesh(verts[t], faces, process=False).export(tmp)
        overlay_s = None
        if self.render_overlay:
            from engine.io import write_mp4
            from engine.progress import track
            from scenes.body_sequence import load_sequence
            from viewer.overlay import overlay_frames

            t0 = time.time()
            scale = min(1.0, 960 / max(width, height))
            size = (2 * round(width * scale / 2), 2 * round(height * scale / 2))  # even, for H.264
            write_mp4(run.path("overlay.mp4"), track(overlay_frames(load_sequence(seq_path), size),
                                                     "rendering overlay.mp4", total=T), fps)
            overlay_s = time.time() - t0
        run.write_metrics(fit_body={
            "frames": T, "detected_frames": int(res.detected.sum()), "seconds": res.seconds,
            "frames_per_second": T / res.seconds, "prior": res.prior, "model": model.name,
            "reprojection_error_px_mean": float(reproj[conf].mean()) if conf.any() else None,
            "reprojection_error_px_median": float(np.median(reproj[conf])) if conf.any() else None,
            "focal_px": float(K[0, 0]), "focal_source": focal_source, "temporal": self.temporal,
            "stages": res.stages, "overlay_seconds": overlay_s})
        log.info("wrote %s (parameters), %s (meshes over time), keypoints.json%s; `lumen3d view %s` plays it",
                 run.path("body.npz"), seq_path, ", overlay.mp4" if self.render_overlay else "", seq_path)


def _frame_size(frames: list[Path]) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    sizes = {}
    for f in frames:
        try:
            with Image.open(f) as im:
                sizes.setdefault(im.size, f)
        except (OSError, UnidentifiedImageError) as e:
            raise InputError(f, f"not a readable image ({e})") from None
    if len(sizes) > 1:
        (a, fa), (b, fb) = list(sizes.items())[:2]
        raise InputError(fb, f"frames differ in size: {fa.name} is {a[0]}x{a[1]}, {fb.name} is {b[0]}x{b[1]}")
    return next(iter(sizes))


def _extract_frames(video: Path, fps: float | None, out_dir: Path) -> tuple[list[Path], float]:
    import subprocess

    import imageio_ffmpeg

    from engine.data.images import list_images

    try:
        meta = imageio_ffmpeg.read_frames(str(video))
        info = next(meta)
        meta.close()
    except (OSError, RuntimeError, StopIteration) as e:
        raise InputError(video, f"cannot read video ({str(e).splitlines()[0] if str(e) else 'no frames'})") from None
    native = float(info.get("fps") or 30.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("frame_*.png"):
        old.unlink()
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(video)]
    if fps:
        cmd += ["-vf", f"fps={fps:g}"]
    cmd += ["-start_number", "0", str(out_dir / "frame_%05d.png")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    frames = list_images(out_dir)
    if proc.returncode != 0 or not frames:
        reason = (proc.stderr.strip().splitlines() or ["no frames decoded"])[-1]
        raise InputError(video, f"cannot decode video ({reason})")
    log.info("extracted %d frames from %s", len(frames), video)
    return frames, float(fps or native)


def _match_frames(kp: np.ndarray, names: list[str], frames: list[Path], source: Path) -> np.ndarray:
    """Keypoints in frame order: by name when the file names its frames, else one per frame in order."""
    stems = [f.stem for f in frames]
    by_name = {n: i for i, n in enumerate(names)}
    if all(s in by_name for s in stems):
        return kp[[by_name[s] for s in stems]]
    if all(f.name in by_name for f in frames):
        return kp[[by_name[f.name] for f in frames]]
    if len(kp) >= len(frames):
        return kp[:len(frames)]
    raise InputError(source, f"keypoints for {len(kp)} frames, but there are {len(frames)} frames and the names "
                             "do not match the frame files")


def _detect(frames: list[Path]) -> np.ndarray:
    from engine.data.images import read_image
    from engine.data.keypoints import detect_mediapipe
    from engine.progress import progress

    def rgb():
        for f in frames:
            yield (read_image(f)[..., :3] * 255).round().astype(np.uint8)

    with progress() as p:
        task = p.add_task(f"detecting keypoints in {len(frames)} frames", total=len(frames))
        return detect_mediapipe(rgb(), progress=lambda: p.advance(task))


def _exif_focal_35mm(path: Path) -> float | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            exif = im.getexif()
            value = exif.get_ifd(0x8769).get(0xA405) or exif.get(0xA405)  # FocalLengthIn35mmFilm
    except Exception:  # no EXIF, or a format without it: the default focal is used
        return None
    return float(value) if value else None
