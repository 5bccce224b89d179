"""`lumen3d generate`: text to 3D on the one training loop. The known-object guidance (the optimal
denoiser of a known object's renders) must pull both representations to that object; the command
runs end to end on a tiny Stable Diffusion folder, writes every output, resumes after SIGKILL to
the same result, and refuses bad input in one line."""

import pytest
import torch

from tests.conftest import assert_one_clear_line, killed_and_resumed, quality, run_cli, tree_digest


def _known(rep, tmp_path):
    from engine.jobs.generate import run_generation
    from engine.methods.configs import GenerateConfig
    from engine.sds_bench import ORACLE

    return run_generation(GenerateConfig(prompt="", guidance="known-object", representation=rep, out=tmp_path,
                                         video_frames=0, mesh_resolution=0, **ORACLE[rep]))


@pytest.mark.parametrize("rep", ["gaussians", "nerf"])
def test_sds_with_a_known_answer_recovers_the_object(rep, tmp_path):
    m = _known(rep, tmp_path)
    quality(f"known object by SDS on {rep}, held-out PSNR", m["test"]["psnr"], ">", 25)
    quality(f"known object by SDS on {rep}, silhouette IoU", m["silhouette_iou"], ">", 0.9)
    assert m["test"]["views"] == 8 and m["guidance"] == "known-object"


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    pytest.importorskip("diffusers")
    from tests.tiny_sd import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


SMALL = ["--render-size", "64", "--guidance-size", "64", "--video-frames", "4", "--mesh-resolution", "32",
         "--checkpoint-every", "2", "--init-points", "500"]


def test_generate_end_to_end_with_a_stable_diffusion_folder(tiny_sd, tmp_path):
    run = tmp_path / "run"
    r = run_cli("generate", "a red chair", "--model", tiny_sd, "--out", run, "--max-steps", "6", *SMALL)
    assert r.returncode == 0, r.stderr[-3000:]
    for f in ("config.json", "metrics.json", "log.txt", "checkpoints/last.pt", "renders/video.mp4",
              "renders/curves.png", "exports/point_cloud.ply", "exports/scene.splat"):
        assert (run / f).is_file(), f
    import json

    m = json.loads((run / "metrics.json").read_text())
    assert m["steps"] == 6 and m["prompt"] == "a red chair" and m["guidance"] == "stable-diffusion"
    assert m["test"] == {}  # nothing to compare a prompt's result with
    log = (run / "log.txt").read_text()
    assert "guidance:" in log and ("bfloat16" in log or "float32" in log)
    r = run_cli("export", run, "--format", "splat", "--out", tmp_path / "out.splat")
    assert r.returncode == 0 and (tmp_path / "out.splat").stat().st_size > 0, r.stderr[-2000:]
    from engine.registry import read_checkpoint

    ckpt, kind = read_checkpoint(run / "checkpoints" / "last.pt")
    assert kind.name == "text-gaussians" and len(kind.method_class().view_content(ckpt, run)["gaussians"]["means"])
    nerf = tmp_path / "nerf"
    r = run_cli("generate", "a red chair", "--model", tiny_sd, "--out", nerf, "--representation", "nerf",
                "--max-steps", "4", "--background", "learned", *SMALL)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (nerf / "renders/video.mp4").is_file() and (nerf / "checkpoints/last.pt").is_file()
    assert json.loads((nerf / "metrics.json").read_text())["representation"] == "nerf"


@pytest.mark.parametrize("rep", ["gaussians", "nerf"])
def test_generate_resumes_after_sigkill_to_the_same_result(rep, tiny_sd, tmp_path):
    args = ["generate", "a red chair", "--model", tiny_sd, "--max-steps", "6", "--representation", rep, *SMALL,
            "--video-frames", "0", "--mesh-resolution", "0"]
    a, b = killed_and_resumed(args, tmp_path, 5)
    pa, pb = (a["params"], b["params"]) if rep == "gaussians" else (a["field"], b["field"])
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.allclose(pa[k], pb[k], atol=1e-6), k


def test_bad_input_is_one_clear_line(tiny_sd, tmp_path):
    r = run_cli("generate", "  ", "--model", tiny_sd, "--out", tmp_path / "a")
    assert_one_clear_line(r, ["prompt", "empty"])
    r = run_cli("generate", "a chair", "--model", tiny_sd, "--representation", "mesh", "--out", tmp_path / "b")
    assert r.returncode == 2 and "representation" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("generate", "a chair", "--model", tiny_sd, "--background", "learned", "--out", tmp_path / "c")
    assert_one_clear_line(r, ["background", "NeRF"])
    r = run_cli("generate", "a chair", "--model", tiny_sd, "--t-range", "0.9", "0.1", "--out", tmp_path / "d")
    assert_one_clear_line(r, ["--t-range", "fractions"])
    assert not any((tmp_path / x).exists() for x in "abcd")
    before = tree_digest(tiny_sd)
    r = run_cli("generate", "a chair", "--model", tiny_sd, "--out", tiny_sd / "runs" / "x")
    assert_one_clear_line(r, ["overlaps the input"])
    assert tree_digest(tiny_sd) == before
