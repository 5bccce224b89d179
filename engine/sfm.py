"""Structure from motion with pycolmap: photos or a video → COLMAP model + transforms.json.

Output layout (inside the run directory):
    colmap/database.db, colmap/sparse/0/   the model as mapped (with lens distortion)
    images/, sparse/0/                     undistorted images and their PINHOLE model
    transforms.json, sparse_pc.ply         the same scene for nerfstudio-format readers
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from engine.data.images import list_images, read_image
from engine.errors import InputError
from engine.io import require_dir

log = logging.getLogger("lumen3d")

CameraModel = Literal["SIMPLE_RADIAL", "OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "RADIAL"]
MIN_REGISTERED = 3


@dataclass
class SfmOptions:
    matching: Literal["auto", "exhaustive", "sequential"] = "auto"
    """Pairs to match: exhaustive (all pairs), sequential (neighbours in name order, for video);
    auto picks sequential for video and for more than 200 photos."""
    camera_model: CameraModel = "SIMPLE_RADIAL"
    """COLMAP camera model to estimate."""
    camera_mode: Literal["single", "per-image"] = "single"
    """One camera shared by all images, or one per image (mixed photo sizes)."""
    max_image_size: int = 3200
    """Images are resized to at most this size for feature extraction."""
    max_features: int = 8192
    """SIFT features per image."""
    sequential_overlap: int = 10
    """With sequential matching: how many following images each image is matched to."""
    threads: int = -1
    """CPU threads (-1: all)."""


@dataclass
class SfmResult:
    registered: int
    total: int
    mean_reprojection_error_px: float
    num_points: int
    seconds: dict[str, float]
    camera: dict


def extract_video_frames(video: Path, fps: float, out_dir: Path) -> list[Path]:
    """Decode `video` at `fps` frames per second into PNGs (ffmpeg from imageio-ffmpeg)."""
    import imageio_ffmpeg

    if not video.is_file():
        raise InputError(video, "video file not found")
    if not fps > 0:
        raise InputError(None, f"--fps must be positive, got {fps}")
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(video),
           "-vf", f"fps={fps:g}", "-start_number", "0", str(out_dir / "frame_%05d.png")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    frames = list_images(out_dir)
    if proc.returncode != 0 or not frames:
        reason = (proc.stderr.strip().splitlines() or ["no frames decoded"])[-1]
        raise InputError(video, f"cannot decode video ({reason})")
    log.info("extracted %d frames from %s at %g fps", len(frames), video, fps)
    return frames


def check_photos(folder: Path, single_camera: bool) -> list[Path]:
    """The folder's images, each fully decoded once so that a corrupt file fails here, clearly."""
    from engine.progress import track

    folder = require_dir(folder, "image folder")
    files = list_images(folder)
    if not files:
        raise InputError(folder, "no images found (.png, .jpg, .jpeg, .bmp, .tif, .webp)")
    if len(files) < MIN_REGISTERED:
        raise InputError(folder, f"only {len(files)} image(s); structure from motion needs at least {MIN_REGISTERED}")
    sizes = {}
    for f in track(files, "checking photos"):
        img = read_image(f)
        sizes.setdefault((img.shape[1], img.shape[0]), f)
    if single_camera and len(sizes) > 1:
        (a, fa), (b, fb) = list(sizes.items())[:2]
        raise InputError(folder, f"images of different sizes in one camera: {fa.name} is {a[0]}x{a[1]}, "
                                 f"{fb.name} is {b[0]}x{b[1]} (use --camera-mode per-image)")
    return files


def run_sfm(images_dir: Path, out: Path, opts: SfmOptions, seed: int = 0, video: bool = False) -> SfmResult:
    """Feature extraction, matching and incremental mapping; then undistortion and export."""
    import pycolmap

    from engine.progress import progress

    files = check_photos(images_dir, opts.camera_mode == "single")
    names = [f.name for f in files]
    colmap_dir = out / "colmap"
    if colmap_dir.exists():
        shutil.rmtree(colmap_dir)
    colmap_dir.mkdir(parents=True)
    db = colmap_dir / "database.db"
    pycolmap.set_random_seed(seed)
    if not logging.getLogger("lumen3d").isEnabledFor(logging.DEBUG):
        pycolmap.logging.minloglevel = 2  # COLMAP's per-step INFO lines would bury our progress
    seconds = {}
    matching = opts.matching
    if matching == "auto":
        matching = "sequential" if video or len(files) > 200 else "exhaustive"

    with progress() as bar:
        t = time.perf_counter()
        task = bar.add_task("extracting SIFT features", total=None)
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = opts.camera_model
        extract = pycolmap.FeatureExtractionOptions()
        extract.num_threads = opts.threads
        extract.max_image_size = opts.max_image_size
        extract.sift.max_num_features = opts.max_features
        mode = pycolmap.CameraMode.SINGLE if opts.camera_mode == "single" else pycolmap.CameraMode.PER_IMAGE
        pycolmap.extract_features(db, images_dir, image_names=names, camera_mode=mode, reader_options=reader,
                                  extraction_options=extract, device=pycolmap.Device.cpu)
        bar.update(task, total=1, completed=1)
        seconds["features"] = time.perf_counter() - t

        t = time.perf_counter()
        task = bar.add_task(f"matching ({matching})", total=None)
        match = pycolmap.FeatureMatchingOptions()
        match.num_threads = opts.threads
        if matching == "exhaustive":
            pycolmap.match_exhaustive(db, matching_options=match, device=pycolmap.Device.cpu)
        else:
            pairing = pycolmap.SequentialPairingOptions()
            pairing.overlap = opts.sequential_overlap
            pairing.loop_detection = False  # needs a vocabulary tree, which would be a download
            pycolmap.match_sequential(db, matching_options=match, pairing_options=pairing, device=pycolmap.Device.cpu)
        bar.update(task, total=1, completed=1)
        seconds["matching"] = time.perf_counter() - t

        t = time.perf_counter()
        task = bar.add_task("mapping (registered images)", total=len(files))
        mapper = pycolmap.IncrementalPipelineOptions()
        mapper.num_threads = opts.threads
        mapper.random_seed = seed
        maps_dir = colmap_dir / "maps"
        recs = pycolmap.incremental_mapping(db, images_dir, maps_dir, mapper,
                                            initial_image_pair_callback=lambda: bar.advance(task, 2),
                                            next_image_callback=lambda: bar.advance(task, 1))
        seconds["mapping"] = time.perf_counter() - t

    rec = max(recs.values(), key=lambda r: r.num_reg_images()) if recs else None
    registered = rec.num_reg_images() if rec else 0
    if registered < MIN_REGISTERED:
        raise InputError(images_dir, f"structure from motion registered {registered} of {len(files)} images "
                                     f"(at least {MIN_REGISTERED} needed): the photos may overlap too little "
                                     "or lack texture")
    sparse = colmap_dir / "sparse" / "0"
    sparse.mkdir(parents=True)
    rec.write(sparse)
    shutil.rmtree(maps_dir, ignore_errors=True)

    t = time.perf_counter()
    _export_undistorted(rec, sparse, images_dir, out)
    seconds["undistort_export"] = time.perf_counter() - t
    cam = next(iter(rec.cameras.values()))
    return SfmResult(registered, len(files), float(rec.compute_mean_reprojection_error()), rec.num_points3D(),
                     seconds, {"model": cam.model.name, "width": cam.width, "height": cam.height,
                               "params": [float(p) for p in cam.params], "num_cameras": rec.num_cameras()})


def _export_undistorted(rec, sparse: Path, images_dir: Path, out: Path) -> None:
    """images/ + sparse/0/ (PINHOLE), transforms.json and sparse_pc.ply in `out`."""
    import pycolmap

    from engine.data.colmap import load_colmap
    from engine.data.nerfstudio import write_nerfstudio
    from engine.data.ply import write_ply_points

    for stale in (out / "images", out / "sparse", out / "transforms.json", out / "sparse_pc.ply"):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    distorted = any(c.model.name not in ("PINHOLE", "SIMPLE_PINHOLE") for c in rec.cameras.values())
    staging = out / ".undistort-tmp"
    shutil.rmtree(staging, ignore_errors=True)
    if distorted:
        pycolmap.undistort_images(staging, sparse, images_dir)
        model_src = staging / "sparse"
    else:
        (staging / "images").mkdir(parents=True)
        for img in rec.images.values():
            shutil.copy2(images_dir / img.name, staging / "images" / img.name)
        model_src = sparse
    (staging / "model").mkdir()
    for f in model_src.iterdir():
        shutil.copy2(f, staging / "model" / f.name)
    (out / "sparse").mkdir()
    (staging / "images").rename(out / "images")
    (staging / "model").rename(out / "sparse" / "0")
    shutil.rmtree(staging)

    scene = load_colmap(out)
    ply = None
    if scene.points is not None:
        write_ply_points(out / "sparse_pc.ply", scene.points, scene.point_colors)
        ply = "sparse_pc.ply"
    write_nerfstudio(out / "transforms.json", scene.frames, out, ply_file=ply)



def colmap_camera(K) -> tuple:
    """COLMAP's model and parameters for our `Intrinsics` (each of our models is one of COLMAP's)."""
    import pycolmap

    if K.model == "PINHOLE":
        return pycolmap.CameraModelId.PINHOLE, [K.fx, K.fy, K.cx, K.cy]
    if K.model == "SIMPLE_RADIAL" and K.fx == K.fy:
        return pycolmap.CameraModelId.SIMPLE_RADIAL, [K.fx, K.cx, K.cy, *K.dist]
    dist = K.dist if K.model == "OPENCV" else (K.dist[0], 0.0, 0.0, 0.0)  # SIMPLE_RADIAL with fx ≠ fy
    return pycolmap.CameraModelId.OPENCV, [K.fx, K.fy, K.cx, K.cy, *dist]


def triangulate_known_poses(scene, threads: int = 1, max_features: int = 8192,
                            seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """SfM points for a posed dataset that ships none (LLFF, nerfstudio without a point cloud):
    SIFT features and exhaustive matching of its training photos, then COLMAP's triangulation with
    the dataset's own cameras held fixed, so the points are in the dataset's frame. Returns points
    (M, 3) float64, colours (M, 3) uint8 and figures (points, reprojection error, seconds). One
    thread by default: COLMAP's threaded triangulation gives slightly different points run to run."""
    import tempfile

    import pycolmap

    from engine.data.images import downscaled_copy

    t = time.perf_counter()
    frames = [scene.frames[i] for i in scene.splits["train"]]
    intr = {(f.intrinsics.width, f.intrinsics.height, f.intrinsics.fx, f.intrinsics.fy, f.intrinsics.cx,
             f.intrinsics.cy, f.intrinsics.model, f.intrinsics.dist) for f in frames}
    if not logging.getLogger("lumen3d").isEnabledFor(logging.DEBUG):
        pycolmap.logging.minloglevel = 2
    pycolmap.set_random_seed(seed)
    with tempfile.TemporaryDirectory(prefix="lumen3d-triangulate-") as tmp:
        tmp = Path(tmp)
        images = tmp / "images"
        images.mkdir()
        names = {}
        for k, f in enumerate(frames):  # the photos at the frames' resolution, under unique names
            src = downscaled_copy(f.image_path, f.downscale).resolve()
            name = f"{k:05d}{src.suffix}"
            (images / name).symlink_to(src)
            names[name] = f
        db = tmp / "database.db"
        reader = pycolmap.ImageReaderOptions()
        if len(intr) == 1 and frames[0].intrinsics.model == "PINHOLE":
            K = frames[0].intrinsics
            reader.camera_model = "PINHOLE"
            reader.camera_params = f"{K.fx!r},{K.fy!r},{K.cx!r},{K.cy!r}"
        extract = pycolmap.FeatureExtractionOptions()
        extract.num_threads = threads
        extract.sift.max_num_features = max_features
        pycolmap.extract_features(db, images, image_names=sorted(names), camera_mode=pycolmap.CameraMode.PER_IMAGE,
                                  reader_options=reader, extraction_options=extract, device=pycolmap.Device.cpu)
        match = pycolmap.FeatureMatchingOptions()
        match.num_threads = threads
        pycolmap.match_exhaustive(db, matching_options=match, device=pycolmap.Device.cpu)
        database = pycolmap.Database.open(db)
        cameras = {c.camera_id: c for c in database.read_all_cameras()}
        rec = pycolmap.Reconstruction()
        for im in database.read_all_images():
            f = names[im.name]
            cam = cameras[im.camera_id]
            # the dataset's intrinsics, whatever the reader guessed, in the database too: triangulation
            # checks that the reconstruction's cameras are the database's
            cam.model, cam.params = colmap_camera(f.intrinsics)
            database.update_camera(cam)
            rec.add_camera_with_trivial_rig(cam)
            w2c = np.linalg.inv(f.c2w)
            rec.add_image_with_trivial_frame(im, pycolmap.Rigid3d(pycolmap.Rotation3d(w2c[:3, :3]), w2c[:3, 3]))
        database.close()
        (tmp / "sparse").mkdir()
        tri = pycolmap.IncrementalPipelineOptions()
        tri.num_threads = threads
        tri.random_seed = seed
        rec = pycolmap.triangulate_points(rec, db, images, tmp / "sparse", options=tri)
        rec.extract_colors_for_all_images(str(images))
        pts = list(rec.points3D.values())
        xyz = np.array([p.xyz for p in pts], np.float64).reshape(-1, 3)
        rgb = np.array([p.color for p in pts], np.uint8).reshape(-1, 3)
        info = {"points": len(pts), "mean_reprojection_error_px": float(rec.compute_mean_reprojection_error()),
                "seconds": time.perf_counter() - t}
    return xyz, rgb, info
