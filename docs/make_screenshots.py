"""Offscreen screenshots of every kind of result `lumen3d view` shows, into docs/images/.

    .venv/bin/python docs/make_screenshots.py [--demo-run runs/demo] [--sfm-run runs/fern-sfm]

Uses the real scenes in ../shared/data and the sample results in viewer/samples.py; with
--demo-run, also the main job's Gaussians with their cameras and the live-view PNG.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
OUT = REPO / "docs" / "images"


def view(name: str, *args) -> None:
    out = OUT / f"{name}.png"
    cmd = [sys.executable, "-m", "engine.cli", "view", *map(str, args), "--png", str(out), "--width", "640",
           "--height", "480"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{name}: {r.stderr.strip()}")
    print("wrote", out.relative_to(REPO))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo-run", type=Path)
    ap.add_argument("--sfm-run", type=Path, help="a `lumen3d sfm` run, e.g. on fern")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from scenes.gaussians import save_ply
    from viewer.samples import known_gaussians, write_meshes, write_stick_figure_sequence

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_ply(known_gaussians(), tmp / "known.ply")
        meshes = write_meshes(tmp / "meshes")
        seq = write_stick_figure_sequence(tmp / "seq", frames=8, width=640, height=480)
        view("splats_raster", tmp / "known.ply")
        view("splats_points_fallback", tmp / "known.ply", "--splats", "points")
        view("mesh_obj_textured", meshes["obj"])
        view("mesh_glb_pbr", meshes["glb"])
        view("mesh_ply_vertex_colours", meshes["ply"])
        view("body_sequence_frame3", seq, "--frame", 3)
        view("cameras_lego", DATA / "lego")
        view("cameras_fern", DATA / "fern")
        view("side_by_side", tmp / "known.ply", meshes["obj"], "--side-by-side")
    if args.sfm_run:
        view("sfm_run_points_and_cameras", args.sfm_run)
    if args.demo_run:
        view("demo_gaussians_and_cameras", args.demo_run)
        view("demo_gaussians_open3d_native", args.demo_run, "--splats", "native", "--no-cameras")
        view("demo_through_camera_0", args.demo_run, "--view-from", 0, "--no-cameras")
        view("demo_sfm_points_and_cameras", args.demo_run / "sparse" / "0")
        live = args.demo_run / "renders" / "live.png"
        if live.is_file():
            shutil.copy(live, OUT / "demo_live_view.png")


if __name__ == "__main__":
    main()
