"""`lumen3d paint`: Paint-it on our mesh renderer. The optimal denoiser of a textured mesh's own renders
must paint that texture back through the whole pipeline (network, PBR shading, mipmaps, antialiasing,
SDS); the command runs end to end on a tiny Stable Diffusion folder for mesh files, run directories
and bodies, resumes after SIGKILL to the same maps, and refuses bad input in one line."""
import json

import numpy as np
import pytest
import torch

from tests.conftest import assert_one_clear_line, killed_and_resumed, quality, run_cli, tree_digest


def test_a_known_texture_is_painted_back(data, tmp_path):
    from engine.jobs.paint import run_paint
    from engine.methods.configs import PaintConfig

    mesh = data / "meshes" / "fuze.obj"
    before = tree_digest(data / "meshes")
    m = run_paint(PaintConfig(mesh=mesh, prompt="", guidance="known-object", max_steps=300, views=2, render_size=128,
                              texture_res=128, channels=32, out=tmp_path, video_frames=0, snapshot_every=0))
    quality("Paint-it known answer, held-out lit PSNR", m["test"]["psnr"], ">", 28)
    quality("Paint-it known answer, base colour PSNR where seen", m["base_color_psnr"], ">", 20)
    assert m["test"]["views"] == 8 and m["uv_source"] == "file" and m["guidance"] == "known-object"
    assert tree_digest(data / "meshes") == before


def test_view_bank_gbuffers_equal_fresh_renders(data):
    """A banked view shades exactly as a fresh render of the same camera."""
    from engine.jobs.paint import load_subject
    from engine.methods.configs import PaintConfig
    from engine.methods.paint import PaintIt

    cfg = PaintConfig(mesh=data / "meshes" / "fuze.obj", prompt="", guidance="known-object", views=3,
                      render_size=64, texture_res=64, channels=8, scales=3, view_bank=5)
    p = PaintIt(cfg, load_subject(cfg))
    gb, views = p.sample_views()
    assert len(views.cameras) == 3 and views.directions[0] == "front" and views.directions[1:] == [None, None]
    maps = p.current_maps()
    banked = p.renderer.shade(gb, "pbr", views.background, p.env, maps=maps).rgb
    fresh = p.renderer.render(views.cameras, "pbr", views.background, p.env, maps=maps).rgb
    assert torch.equal(banked, fresh)
    assert float((banked < 0.99).float().mean()) > 0.05  # the mesh is in view


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    pytest.importorskip("diffusers")
    from tests.tiny_sd import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


SMALL = ["--render-size", "64", "--guidance-size", "64", "--texture-res", "64", "--channels", "8", "--scales", "3",
         "--view-bank", "4", "--video-frames", "4", "--checkpoint-every", "2", "--snapshot-every", "2"]


def test_paint_end_to_end_with_a_stable_diffusion_folder(tiny_sd, data, tmp_path):
    run = tmp_path / "run"
    mesh = data / "meshes" / "CesiumMilkTruck.glb"
    r = run_cli("paint", mesh, "a red delivery truck", "--model", tiny_sd, "--out", run, "--max-steps", "4", *SMALL)
    assert r.returncode == 0, r.stderr[-3000:]
    for f in ("config.json", "metrics.json", "log.txt", "checkpoints/last.pt", "renders/video.mp4",
              "renders/curves.png", "renders/snapshots/step_00002.png", "renders/snapshots/step_00004.png",
              "exports/mesh.glb", "exports/obj/mesh.obj", "exports/obj/mesh.mtl", "exports/obj/mesh_0_basecolor.png",
              "exports/obj/mesh_0_orm.png", "exports/obj/mesh_0_normal.png"):
        assert (run / f).is_file(), f
    m = json.loads((run / "metrics.json").read_text())
    assert m["steps"] == 4 and m["prompt"] == "a red delivery truck" and m["guidance"] == "stable-diffusion"
    assert m["uv_source"] == "xatlas"  # several materials, each in its own UV square: one new layout
    assert "new UVs by xatlas for one painted texture (the mesh has 5 materials" in (run / "log.txt").read_text()
    # the painted mesh is the user's, in the user's frame, with the painted PBR material
    from scenes.mesh_files import read_textured_mesh

    src, out = read_textured_mesh(mesh), read_textured_mesh(run / "exports" / "mesh.glb")
    assert len(out.faces) == len(src.faces) and len(out.parts) == 1
    assert torch.allclose(out.vertices.min(0).values, src.vertices.min(0).values, atol=1e-4)
    assert torch.allclose(out.vertices.max(0).values, src.vertices.max(0).values, atol=1e-4)
    mat = out.parts[0].material
    assert mat.base_color is not None and mat.orm is not None and mat.normal is not None
    assert mat.base_color.shape[:2] == (64, 64)
    obj = read_textured_mesh(run / "exports" / "obj" / "mesh.obj")
    assert torch.allclose(obj.parts[0].material.base_color[..., :3], mat.base_color[..., :3], atol=1 / 255)
    r = run_cli("view", run, "--png", tmp_path / "view.png", "--width", "160", "--height", "120")
    assert r.returncode == 0 and (tmp_path / "view.png").stat().st_size > 0, r.stderr[-2000:]


def test_paint_resumes_after_sigkill_to_the_same_maps(tiny_sd, data, tmp_path):
    args = ["paint", data / "meshes" / "BoxTextured.glb", "a wooden crate", "--model", tiny_sd, "--max-steps", "6",
            *SMALL, "--video-frames", "0"]
    a, b = (state["net"] for state in killed_and_resumed(args, tmp_path, 5))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    for f in ("mesh_0_basecolor.png", "mesh_0_orm.png", "mesh_0_normal.png"):
        assert (tmp_path / "whole" / "exports" / "obj" / f).read_bytes() == \
            (tmp_path / "killed" / "exports" / "obj" / f).read_bytes(), f


def test_paint_a_run_export_and_bodies(tiny_sd, tmp_path):
    import trimesh

    nerf = tmp_path / "nerf-run"
    (nerf / "exports").mkdir(parents=True)
    trimesh.creation.icosphere(3).export(nerf / "exports" / "mesh.ply")
    r = run_cli("paint", nerf, "a marble ball", "--model", tiny_sd, "--out", tmp_path / "a", "--max-steps", "2",
                *SMALL)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["uv_source"] == "xatlas" and not m["face_view"]
    # a fit-body result (the open model's neutral body, one frame) and the rest pose: a face view each step
    from scenes.open_body import load_open_body

    model = load_open_body()
    fit = tmp_path / "fit"
    fit.mkdir()
    np.savez(fit / "body.npz", betas=np.zeros((1, model.num_betas), np.float32),
             pose=np.zeros((1, model.num_joints, 3), np.float32), transl=np.zeros((1, 3), np.float32),
             model=np.array("anny"))
    for src, out in ((fit, "b"), ("anny", "c")):
        r = run_cli("paint", src, "an astronaut", "--model", tiny_sd, "--out", tmp_path / out, "--max-steps", "2",
                    "--views", "2", *SMALL)
        assert r.returncode == 0, r.stderr[-3000:]
        m = json.loads((tmp_path / out / "metrics.json").read_text())
        assert m["face_view"] and m["uv_source"] == "xatlas", m


def test_face_view_looks_at_the_head():
    """A standing body's face view is centred on the top of the body, in front of it and close."""
    import trimesh

    from engine.methods.configs import PaintConfig
    from engine.methods.paint import PaintIt, PaintSubject
    from scenes.textured_mesh import Material, TexturedMesh, unwrap

    # a box body 1.5 tall with a box head on top (y up, as body models are), textured for the oracle
    body = trimesh.creation.box((0.4, 1.5, 0.3))
    head = trimesh.creation.box((0.2, 0.3, 0.2))
    head.apply_translation((0, 0.9, 0))
    both = trimesh.util.concatenate([body, head])
    mesh = unwrap(TexturedMesh(torch.tensor(both.vertices, dtype=torch.float32),
                               torch.tensor(both.faces, dtype=torch.long)))
    mesh = mesh.with_material(Material(base_color=torch.rand(8, 8, 3)))
    cfg = PaintConfig(mesh="x", prompt="a knight", guidance="known-object", views=2, render_size=64, texture_res=64,
                      channels=8, scales=3, view_bank=0)
    p = PaintIt(cfg, PaintSubject(mesh, "y", body=True, original=mesh))
    assert p.fixed.directions == ["front", "face"]
    eye, top = p.fixed.cameras.c2w[1, :3, 3], float(p.mesh.vertices[:, 2].max())
    assert top - 0.35 < float(eye[2]) <= top + 1e-4 and 0.2 < float(eye[0]) < 1.5  # level with the head, in front
    assert abs(float(eye[1])) < 1e-4
    assert float(p.fixed.gbuffer.hit[1].mean()) > 0.2  # the head fills a good part of the frame
    assert float(p.fixed.gbuffer.hit[1].mean()) < 0.9
    gb, views = p.sample_views()
    assert views.directions == ["front", "face", None]  # front, face and one random view


def test_a_view_that_names_its_prompt_gets_it(tiny_sd):
    """Paint-it's face view: the guidance takes its prompt by name, the other views by their angles."""
    from engine.cameras import sample_orbit_cameras
    from engine.guidance import Views
    from engine.guidance.stable_diffusion import StableDiffusionGuidance

    g = StableDiffusionGuidance.load(tiny_sd, "a knight", extra_prompts={"face": "the face of a knight"})
    cams, az, el = sample_orbit_cameras(3, 32, 32, torch.Generator().manual_seed(0))
    az = torch.tensor([0.0, 0.0, 180.0])
    el = torch.zeros(3)
    cond, uncond = g.text_embeddings(Views(cams, az, el, None, ["face", None, None]))
    assert torch.equal(cond[0], g.cond["face"]) and torch.equal(cond[1], g.cond["front"])
    assert torch.equal(cond[2], g.cond["back"]) and not torch.equal(g.cond["face"], g.cond["front"])


def test_bad_input_is_one_clear_line(tiny_sd, data, tmp_path):
    empty = tmp_path / "empty.obj"
    empty.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    r = run_cli("paint", empty, "a chair", "--model", tiny_sd, "--out", tmp_path / "a")
    assert_one_clear_line(r, [str(empty), "no triangles"])
    nan = tmp_path / "nan.obj"
    nan.write_text("v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n")
    r = run_cli("paint", nan, "a chair", "--model", tiny_sd, "--out", tmp_path / "b")
    assert_one_clear_line(r, [str(nan), "non-finite"])
    junk = tmp_path / "junk.glb"
    junk.write_bytes(b"this is not a mesh at all")
    r = run_cli("paint", junk, "a chair", "--model", tiny_sd, "--out", tmp_path / "c")
    assert_one_clear_line(r, [str(junk)])
    big = data / "meshes" / "CesiumMilkTruck.glb"
    r = run_cli("paint", big, "a truck", "--model", tiny_sd, "--max-faces", "1000", "--out", tmp_path / "d")
    assert_one_clear_line(r, [str(big), "--max-faces", "decimate"])
    r = run_cli("paint", big, "a truck", "--model", tmp_path / "no-such-model", "--out", tmp_path / "e")
    assert_one_clear_line(r, ["no-such-model", "Stable Diffusion folder"])
    r = run_cli("paint", big, "a truck", "--out", tmp_path / "f")
    assert_one_clear_line(r, ["--model"])
    r = run_cli("paint", big, "  ", "--model", tiny_sd, "--out", tmp_path / "g")
    assert_one_clear_line(r, ["prompt", "empty"])
    r = run_cli("paint", big, "a truck", "--model", tiny_sd, "--texture-res", "100", "--out", tmp_path / "h")
    assert_one_clear_line(r, ["--texture-res", "multiple of 32"])
    r = run_cli("paint", tmp_path / "nowhere.obj", "a truck", "--model", tiny_sd, "--out", tmp_path / "i")
    assert_one_clear_line(r, ["nowhere.obj", "no such"])
    r = run_cli("paint", big, "a truck", "--model", tiny_sd, "--environment", empty, "--out", tmp_path / "j")
    assert_one_clear_line(r, [str(empty)])
    run_dir = tmp_path / "emptyrun"
    run_dir.mkdir()
    r = run_cli("paint", run_dir, "a truck", "--model", tiny_sd, "--out", tmp_path / "k")
    assert_one_clear_line(r, [str(run_dir), "no mesh"])
    assert not any((tmp_path / x).exists() for x in "abcdefghijk")


def test_bench_paint_times_every_stage_with_any_guidance_model(data, tmp_path):
    """The benchmark's parts on a tiny random Stable Diffusion (its real run uses SD 2.1-base's
    architecture): every stage timed, the whole step too, and a missing mesh refused."""
    pytest.importorskip("diffusers")
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from engine.paint_bench import STAGES, paint_method, stage_times, step_time

    torch.manual_seed(0)
    parts = {"unet": UNet2DConditionModel(block_out_channels=(4, 8), layers_per_block=1, sample_size=8,
                                          down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                          up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=8,
                                          norm_num_groups=2, attention_head_dim=2),
             "vae": AutoencoderKL(block_out_channels=[4, 4], down_block_types=["DownEncoderBlock2D"] * 2,
                                  up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=2),
             "text_dim": 8}
    m = paint_method(data / "meshes" / "BoxTextured.glb", "fast", "bf16", parts)
    assert m.guidance.name == "stable-diffusion" and m.cfg.views == 2 and m.cfg.texture_res == 256
    st = stage_times(m)
    assert set(st) == set(STAGES) and all(v > 0 for v in st.values()), st
    assert step_time(m) > 0
    r = run_cli("bench", "paint", "--mesh", tmp_path / "none.obj")
    assert_one_clear_line(r, ["none.obj", "no such mesh"])
