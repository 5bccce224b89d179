"""The object world and the built-in guidance model: the world's captions and renders say what they
show; the shipped weights load, sample what a prompt asks for (the shipped judge agrees) and refuse
words outside their vocabulary; `lumen3d generate` runs with them and nothing else; the training
commands resume after SIGKILL to the same weights."""

import json

import pytest
import torch

from tests.conftest import assert_one_clear_line, killed_and_resumed, quality, run_cli


@pytest.fixture(scope="module")
def shipped():
    from engine.guidance.objects.guidance import load_model
    from engine.guidance.objects.judge import Judge
    from engine.guidance.objects.weights import JUDGE_FILE, MODEL_FILE, read_network

    model, notes = load_model(MODEL_FILE)
    judge = Judge()
    judge.load_state_dict(read_network(JUDGE_FILE)[1])
    return model, judge.eval(), notes


def test_the_world_holds_out_combinations_but_shows_every_word():
    from engine.guidance.objects.world import COLOURS, KINDS, PATTERNS, all_items, held_out_items, training_items

    assert len(KINDS) >= 12 and len(COLOURS) >= 10 and len(PATTERNS) >= 4
    held, train = set(held_out_items()), training_items()
    assert len(held) == 48 and not held & set(train) and len(train) + len(held) == len(all_items())
    for attr, names in (("kind", KINDS), ("colour", COLOURS), ("pattern", PATTERNS)):
        counts = {n: sum(getattr(i, attr) == n for i in train) for n in names}
        assert min(counts.values()) >= 20, counts  # every word is learnt from many combinations


def test_captions_name_the_view_only_where_the_object_has_a_front():
    from engine.guidance.objects.world import Item

    assert Item("mushroom", "red", "striped").caption("front") == "a red striped mushroom"
    assert Item("cube", "orange", "plain").caption() == "an orange cube"
    assert Item("cube", "orange", "plain").caption(plain_word=True) == "an orange plain cube"
    assert Item("chair", "blue", "dotted").caption("back") == "a blue dotted chair, back view"


def test_renders_show_the_colour_and_the_pattern():
    """A plain object's pixels are one hue; a striped one's alternate between its colour and cream;
    every render is deterministic for its seed and fills the frame with the object over grey."""
    from engine.guidance.objects.world import BACKGROUND, COLOURS, SECOND, Item, shoot

    items = [Item("cube", "red", "plain"), Item("cube", "red", "striped"), Item("sphere", "blue", "checkered")]
    a = shoot(items, torch.Generator().manual_seed(3))
    b = shoot(items, torch.Generator().manual_seed(3))
    assert torch.equal(a.images, b.images) and a.images.shape == (3, 3, 64, 64)
    img = a.images.permute(0, 2, 3, 1)
    corner = img[:, 0, 0]
    assert ((corner >= BACKGROUND[0] - 1e-6) & (corner <= BACKGROUND[1] + 1e-6)).all()
    obj = (img - corner[:, None, None]).abs().sum(-1) > 0.05
    assert all(0.1 < float(m.float().mean()) < 0.6 for m in obj)
    # inside the silhouette only (its antialiased rim mixes in the grey)
    obj = -torch.nn.functional.max_pool2d(-obj.float()[:, None], 3, 1, 1)[:, 0] > 0.5
    red, cream = torch.tensor(COLOURS["red"]), torch.tensor(SECOND)

    def share(k, colour):  # object pixels whose chromaticity is the colour's
        px = img[k][obj[k]]
        chroma = px / px.sum(-1, keepdim=True).clamp_min(1e-6)
        target = colour / colour.sum()
        return float(((chroma - target).abs().sum(-1) < 0.08).float().mean())

    blue = torch.tensor(COLOURS["blue"])
    assert share(0, red) > 0.85 and share(0, cream) < 0.02
    assert share(1, red) > 0.1 and share(1, cream) > 0.2  # seen from above: a cream top, stripes below
    assert share(2, blue) > 0.25 and share(2, cream) > 0.25


def test_the_tokenizer_refuses_unknown_words_and_lists_what_it_knows():
    from engine.errors import InputError
    from engine.guidance.objects.model import MAX_TOKENS, Tokenizer

    tok = Tokenizer()
    ids = tok(["a red striped mushroom, front view", ""])
    assert ids.shape == (2, MAX_TOKENS) and int((ids[0] > 0).sum()) == 7 and int((ids[1] > 0).sum()) == 1
    with pytest.raises(InputError) as e:
        tok(["a corgi wearing a hat"])
    msg = str(e.value)
    assert "'corgi'" in msg and "'wearing'" in msg and "mushroom" in msg and "striped" in msg and "--model" in msg


def test_shipped_weights_load_small_and_sample_what_the_prompt_says(shipped):
    """Sampling is the model's own test: 8 samples of a seen prompt; the judge names all three
    attributes in most of them."""
    from engine.guidance.objects.diffusion import sample
    from engine.guidance.objects.model import count_parameters
    from engine.guidance.objects.weights import JUDGE_FILE, MODEL_FILE
    from engine.guidance.objects.world import Item, held_out_items

    model, judge, notes = shipped
    assert MODEL_FILE.stat().st_size <= 40e6 and JUDGE_FILE.stat().st_size <= 10e6
    assert count_parameters(model) > 1e6
    assert [Item.from_index(*i) for i in notes["held_out"]] == held_out_items()
    item = Item("mushroom", "red", "striped")
    assert item not in held_out_items()
    imgs = sample(model, [item.caption()] * 8, torch.Generator().manual_seed(0), steps=30, scale=4.0,
                  dtype=torch.bfloat16)
    names = judge.name(imgs)
    right = sum(names["kind"][i] == "mushroom" and names["colour"][i] == "red" and names["pattern"][i] == "striped"
                for i in range(8))
    quality("2D samples of 'a red striped mushroom' the judge names right (of 8)", right, ">", 5)


def test_the_judge_names_new_views(shipped):
    from engine.methods.objects import judge_accuracy

    acc = judge_accuracy(shipped[1], torch.Generator().manual_seed(123), 500)
    quality("judge on 500 new views, all three attributes", acc["all"], ">", 0.95)


def test_builtin_guidance_follows_classifier_free_guidance(shipped):
    """ε̂ = ε_u + s(ε_c − ε_u) with the view's own caption: checked against the model called directly."""
    from engine.cameras import sample_orbit_cameras
    from engine.guidance import Views
    from engine.guidance.objects.guidance import ObjectsGuidance, world_prompt
    from engine.guidance.objects.model import Tokenizer

    model = shipped[0]
    assert world_prompt("a red chair", "side") == "a red chair, side view"
    assert world_prompt("a red cube", "side") == "a red cube"
    g = ObjectsGuidance(model, "a blue dotted house", guidance_scale=3.0)
    cams, az, el = sample_orbit_cameras(2, 64, 64, torch.Generator().manual_seed(0), elevation_deg=(0, 0))
    az = torch.tensor([0.0, 180.0])
    views = Views(cams, az, el)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([300, 600])
    eps = g.predict_noise(x, t, views, 0.5)
    tok = Tokenizer()
    with torch.no_grad():
        e_c = model(x, t, tok(["a blue dotted house, front view", "a blue dotted house, back view"]))
        e_u = model(x, t, tok(["", ""]))
    assert torch.allclose(eps, e_u + 3.0 * (e_c - e_u), atol=0.05)  # bf16 in the guidance


def test_generate_runs_with_nothing_but_the_repository(tmp_path):
    r = run_cli("generate", "a red striped mushroom", "--max-steps", "40", "--video-frames", "4",
                "--mesh-resolution", "32", "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert m["guidance"] == "builtin" and m["steps"] == 40
    assert cfg["guidance"] == "builtin" and cfg["background"] == "grey" and cfg["guidance_scale"] > 1
    for f in ("exports/point_cloud.ply", "exports/mesh.ply", "renders/video.mp4", "checkpoints/last.pt"):
        assert (tmp_path / "run" / f).is_file(), f


def test_generate_nerf_with_the_builtin_model_keeps_its_march_and_background(tmp_path):
    """The built-in NeRF recipe (albedo throughout, a 256-step march, Adam at 3e-3) is what the run
    uses, and its checkpoint renders as the run did: the same step, over the world's grey."""
    import math

    from engine.guidance.objects.world import BACKGROUND
    from engine.io import load_checkpoint
    from engine.methods.nerf import NerfModel
    from scenes.nerf import MARCH_STEPS

    run = tmp_path / "run"
    r = run_cli("generate", "a red striped mushroom", "--representation", "nerf", "--max-steps", "24",
                "--video-frames", "0", "--mesh-resolution", "0", "--out", run)
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = json.loads((run / "config.json").read_text())["config"]
    assert (cfg["march_steps"], cfg["lr"], cfg["shading_start"], cfg["background"]) == (256, 3e-3, 1.0, "grey")
    assert json.loads((run / "metrics.json").read_text())["shading_steps"] == {"albedo": 24, "lambertian": 0,
                                                                                "textureless": 0}
    path = run / "checkpoints" / "last.pt"
    model = NerfModel.from_checkpoint(load_checkpoint(path), path)
    assert model.march_steps == 256 and model.dt == pytest.approx(2 * math.sqrt(3) / 256)
    assert model.background.tolist() == pytest.approx([sum(BACKGROUND) / 2] * 3)
    # a checkpoint whose march makes no step is refused, not divided by
    from engine.errors import InputError

    bad = load_checkpoint(path)
    bad["meta"]["march_steps"] = 0
    with pytest.raises(InputError, match="does not describe its field"):
        NerfModel.from_checkpoint(bad, path)
    # a run with a model the user brings keeps instant-NGP's march and DreamFusion's shading
    from engine.methods.configs import GenerateConfig

    sd = GenerateConfig(prompt="a chair", representation="nerf", model=tmp_path).resolved()
    assert (sd.march_steps, sd.lr, sd.shading_start) == (MARCH_STEPS, 1e-2, 0.1)


def test_prompts_outside_the_world_are_refused_in_one_line(tmp_path):
    r = run_cli("generate", "a DSLR photo of a corgi", "--out", tmp_path / "a")
    assert_one_clear_line(r, ["'corgi'", "kinds:", "mushroom", "--model"])
    r = run_cli("generate", "a red cube", "--model", tmp_path / "nowhere.safetensors", "--out", tmp_path / "b")
    assert_one_clear_line(r, ["nowhere.safetensors"])
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not weights")
    r = run_cli("generate", "a red cube", "--model", bad, "--out", tmp_path / "c")
    assert_one_clear_line(r, ["bad.safetensors", "not a readable weights file"])
    assert not any((tmp_path / x).exists() for x in "abc")


SMALL_MODEL = ["--channels", "16", "16", "16", "--batch", "4", "--max-steps", "6", "--checkpoint-every", "2",
               "--sample-every", "0", "--warmup", "2"]


def test_guidance_training_resumes_after_sigkill_to_the_same_weights(tmp_path):
    whole, resumed = killed_and_resumed(["train", "guidance", *SMALL_MODEL], tmp_path, kill_at=4)
    for k in ("model", "ema"):
        for name, v in whole[k].items():
            assert torch.equal(v, resumed[k][name]), (k, name)
    # the run exports weights that the guidance loads, and a sample grid
    from engine.guidance.objects.guidance import load_model

    model, notes = load_model(tmp_path / "whole" / "exports" / "objects64.safetensors")
    assert model.cfg.channels == (16, 16, 16) and len(notes["held_out"]) == 48
    assert (tmp_path / "whole" / "renders" / "samples" / "final.png").is_file()
    # `lumen3d export --format weights` writes the same file from the checkpoint (unfinished runs too)
    r = run_cli("export", tmp_path / "killed", "--format", "weights", "--out", tmp_path / "again.safetensors")
    assert r.returncode == 0, r.stderr[-2000:]
    again, _ = load_model(tmp_path / "again.safetensors")
    for (k, v), (k2, v2) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k


def test_judge_training_runs_and_exports(tmp_path):
    r = run_cli("train", "judge", "--max-steps", "3", "--batch", "8", "--out", tmp_path / "j")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "j" / "metrics.json").read_text())
    assert set(m["held_out_views"]) == {"kind", "colour", "pattern", "all"}
    assert (tmp_path / "j" / "exports" / "judge.safetensors").is_file()
    r = run_cli("export", tmp_path / "j", "--format", "mesh")
    assert_one_clear_line(r, ["judge run exports --format weights"])


def test_paint_runs_with_the_builtin_model(data, tmp_path):
    """Paint-it with no --model: the built-in model paints a box over its world's grey."""
    r = run_cli("paint", data / "meshes" / "BoxTextured.glb", "a red checkered cube", "--out", tmp_path / "p",
                "--max-steps", "4", "--views", "2", "--render-size", "64", "--texture-res", "64", "--view-bank", "4",
                "--snapshot-every", "0", "--video-frames", "2", "--channels", "8", "--scales", "3")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "p" / "metrics.json").read_text())
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())["config"]
    assert m["guidance"] == "builtin" and m["steps"] == 4 and cfg["background"] == "grey"
    assert (tmp_path / "p" / "exports" / "mesh.glb").is_file()


def test_bench_text_to_3d_writes_its_figures(tmp_path):
    """A short benchmark (2 prompts, few steps): the JSON has the issue's fields and the picture is written."""
    r = run_cli("bench", "text-to-3d", "--representations", "gaussians", "--seen", "1", "--held-out", "1",
                "--samples-per-prompt", "2", "--sample-steps", "4", "--max-steps", "10",
                "--json", tmp_path / "b.json", "--grid", tmp_path / "b.png")
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads((tmp_path / "b.json").read_text())
    res = d["results"][0]
    for k in ("representation", "prompts", "kind_acc", "colour_acc", "pattern_acc", "all_acc", "held_out_all_acc",
              "minutes_per_prompt", "samples_2d_acc"):
        assert k in res, k
    assert res["prompts"] == 2 and [p["held_out"] for p in d["prompts"]] == [False, True]
    assert all(0 <= res[k] <= 1 for k in ("kind_acc", "colour_acc", "pattern_acc", "all_acc"))
    assert (tmp_path / "b.png").is_file()
