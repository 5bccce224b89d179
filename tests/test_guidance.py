"""Guidance for text to 3D: the Stable Diffusion plumbing on a tiny random model saved with
`save_pretrained` and loaded by path (CFG, v-prediction, schedules, weightings, the SDS gradient
through the VAE encoder, bf16, the embedding cache, a small VAE, the latent path, missing files),
and the known-object guidance's optimal denoiser."""
import shutil

import pytest
import torch

from tests.conftest import assert_one_clear_line, run_cli

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from tests.tiny_sd import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


def _views(n=2, size=32, seed=0):
    from engine.cameras import sample_orbit_cameras
    from engine.guidance import Views

    cams, az, el = sample_orbit_cameras(n, size, size, torch.Generator().manual_seed(seed), stratified=True)
    return Views(cams, az, el, torch.rand(n, size, size, 3))


def _sd(folder, **kw):
    from engine.guidance.stable_diffusion import StableDiffusionGuidance

    kw = {"guidance_size": 64, "precision": "float32", **kw}
    return StableDiffusionGuidance.load(folder, "a red chair", **kw)


def test_classifier_free_guidance_is_the_hand_computation(tiny_sd):
    g = _sd(tiny_sd, guidance_scale=7.5, negative_prompt="blurry")
    views = _views()
    x_t = torch.randn(2, 4, 8, 8)
    t = torch.tensor([100, 700])
    from engine.guidance.prompts import view_directions

    dirs = view_directions(views.azimuth, views.elevation)
    with torch.no_grad():
        cond = torch.stack([g.cond[d] for d in dirs])
        e_c = g.unet(x_t, t, encoder_hidden_states=cond).sample
        e_u = g.unet(x_t, t, encoder_hidden_states=g.uncond.expand_as(cond)).sample
    want = e_u + 7.5 * (e_c - e_u)
    got = g.predict_noise(x_t, t, views, 0.5)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (got - want).abs().max()
    assert not torch.allclose(e_c, e_u)  # the prompts make a difference, so the check above means something


def test_v_prediction_is_turned_into_noise(tmp_path):
    from tests.tiny_sd import make_tiny_sd

    folder = make_tiny_sd(tmp_path / "v", prediction_type="v_prediction")
    g = _sd(folder, guidance_scale=1.0)
    views, x_t, t = _views(), torch.randn(2, 4, 8, 8), torch.tensor([10, 900])
    cond, _ = g.text_embeddings(views)
    with torch.no_grad():
        v = g.unet(x_t, t, encoder_hidden_states=cond).sample
    a = g.alphas_cumprod[t].float().reshape(-1, 1, 1, 1)
    assert torch.allclose(g.predict_noise(x_t, t, views, 0.0), a.sqrt() * v + (1 - a).sqrt() * x_t, atol=1e-5)


def test_timestep_schedules_and_weightings():
    from engine.guidance.schedule import TimestepSchedule, scaled_linear_alphas_cumprod, weight

    g = torch.Generator().manual_seed(0)
    s = TimestepSchedule(1000, (0.02, 0.98))
    assert s.bounds(0.0) == s.bounds(1.0) == (20, 980)
    t = s.sample(10_000, 0.5, g)
    assert int(t.min()) == 20 and int(t.max()) == 980  # inclusive at both ends, uniform between
    assert abs(float(t.float().mean()) - 500) < 10
    lin = TimestepSchedule(1000, (0.02, 0.98), "linear", (0.02, 0.5))
    assert lin.bounds(0.0) == (20, 980) and lin.bounds(0.5) == (20, 740) and lin.bounds(1.0) == (20, 500)
    sq = TimestepSchedule(1000, (0.3, 0.98), "sqrt", (0.2, 0.5))  # Paint-it's
    assert sq.bounds(0.25) == (250, 740)
    dg = TimestepSchedule(1000, (0.02, 0.98), "dreamgaussian")
    assert dg.sample(3, 0.0, g).tolist() == [980] * 3  # clipped to the range
    assert dg.sample(3, 0.4, g).tolist() == [600] * 3 and dg.sample(1, 1.0, g).tolist() == [20]
    a = scaled_linear_alphas_cumprod()
    assert abs(float(a[0]) - (1 - 0.00085)) < 1e-12 and 0.004 < float(a[-1]) < 0.005  # SD's ᾱ_T ≈ 0.0047
    tt = torch.tensor([0, 499, 999])
    assert torch.allclose(weight(a[tt], "sds"), 1 - a[tt])
    assert torch.allclose(weight(a[tt], "uniform"), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(weight(a[tt], "fantasia3d"), a[tt].sqrt() * (1 - a[tt]))


def test_sds_gradient_through_the_vae_encoder_is_w_times_eps_difference(tiny_sd):
    """The image gradient of the guidance loss is exactly w(t)(ε̂ − ε) pushed back through the
    encoder: the same draws replayed by hand, and a vector-Jacobian product of the encoder."""
    from engine.guidance.schedule import weight

    g = _sd(tiny_sd, guidance_scale=20.0, grad_clip=None)
    views = _views()
    images = torch.rand(2, 40, 40, 3, requires_grad=True)
    state = g.generator.get_state()
    out = g(images, views, 0.3)
    out.loss.backward()
    g.generator.set_state(state)
    x = images.detach().requires_grad_(True)
    latents = g.encode(x, views)  # draws the posterior's noise first, as the call did
    t = g.schedule.sample(2, 0.3, g.generator)
    assert torch.equal(t, out.t)
    noise = torch.randn(latents.shape, generator=g.generator)
    a = g.alphas_cumprod[t].float().reshape(-1, 1, 1, 1)
    eps = g.predict_noise(a.sqrt() * latents.detach() + (1 - a).sqrt() * noise, t, views, 0.3)
    grad = weight(g.alphas_cumprod[t], "sds").float().reshape(-1, 1, 1, 1) * (eps - noise)
    (want,) = torch.autograd.grad(latents, x, grad / 2)
    assert latents.shape == (2, 4, 8, 8)  # 64² → 8² latents: the VAE's four blocks divide by 8
    assert torch.allclose(images.grad, want, atol=1e-6, rtol=1e-4), (images.grad - want).abs().max()
    assert float(want.abs().max()) > 0


def test_sds_loss_gradient_is_g_over_batch_and_nans_are_removed():
    from engine.guidance.schedule import sds_gradient, sds_loss

    x = torch.randn(3, 4, 5, 5, requires_grad=True)
    eps, noise = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    eps[0, 0, 0, 0] = float("nan")
    g = sds_gradient(eps, noise, torch.tensor([0.5, 1.0, 2.0]), clip=0.7)
    assert torch.isfinite(g).all() and float(g.abs().max()) <= 0.7 and float(g[0, 0, 0, 0]) == 0
    sds_loss(x, g).backward()
    assert torch.allclose(x.grad, g / 3)


def test_bf16_agrees_with_float32(tiny_sd):
    """To bf16's resolution of the quantities computed: ε̂ within 2% at s = 1, and the CFG term
    ε_c − ε_u within 2% of |ε| (a random tiny model's prompts barely differ, so that term is small
    and CFG's scale magnifies its rounding: measured against |ε|, not against itself)."""
    g32, g16 = _sd(tiny_sd, guidance_scale=1.0), _sd(tiny_sd, precision="bf16", guidance_scale=1.0)
    assert g16.dtype == torch.bfloat16 and next(g16.unet.parameters()).dtype == torch.bfloat16
    views, x_t, t = _views(), torch.randn(2, 4, 8, 8), torch.tensor([200, 800])
    e32, e16 = g32.predict_noise(x_t, t, views, 0.5), g16.predict_noise(x_t, t, views, 0.5)
    assert float((e32 - e16).norm() / e32.norm()) < 0.02
    g32.guidance_scale = g16.guidance_scale = 2.0  # ε_u + 2(ε_c − ε_u) − ε_c = ε_c − ε_u
    d32, d16 = g32.predict_noise(x_t, t, views, 0.5) - e32, g16.predict_noise(x_t, t, views, 0.5) - e16
    assert float((d32 - d16).norm() / e32.norm()) < 0.02
    images = torch.rand(2, 64, 64, 3)
    z32, z16 = g32.encode(images, views), g16.encode(images, views)  # posterior noise differs: compare means
    assert float((z32 - z16).abs().mean()) < 0.05 * float(z32.abs().mean()) + 0.05


def test_text_embeddings_are_cached_on_disk_by_model_and_prompt(tiny_sd, tmp_path):
    first = _sd(tiny_sd, cache_root=tmp_path)
    assert first.cache_hits == 0 and len(list(tmp_path.rglob("*.safetensors"))) == 5  # 4 views + negative
    again = _sd(tiny_sd, cache_root=tmp_path)
    assert again.cache_hits == 5
    assert torch.equal(first.cond["side"], again.cond["side"]) and torch.equal(first.uncond, again.uncond)
    from engine.guidance.stable_diffusion import _encode_text

    direct = _encode_text(tiny_sd, ["a red chair, side view"])[0]
    assert torch.allclose(direct, again.cond["side"])


def test_view_dependent_prompts():
    from engine.guidance.prompts import ViewThresholds, view_directions, view_prompt

    az = torch.tensor([0.0, 30.0, 90.0, 180.0, 220.0, 350.0, 100.0])
    el = torch.tensor([0.0, 10.0, 0.0, 0.0, 0.0, 0.0, 70.0])
    assert view_directions(az, el) == ["front", "front", "side", "back", "back", "front", "overhead"]
    assert view_directions(az, el, ViewThresholds(front=20, back=20, overhead=80))[1] == "side"
    assert view_prompt("a corgi", "side") == "a corgi, side view"


def test_a_small_vae_and_the_latent_path(tiny_sd, tmp_path):
    from diffusers import AutoencoderTiny

    from engine.guidance.stable_diffusion import LATENT_RANGE

    torch.manual_seed(0)
    AutoencoderTiny(encoder_block_out_channels=(4, 4, 4, 4), decoder_block_out_channels=(4, 4, 4, 4),
                    num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1)).save_pretrained(tmp_path / "taesd")
    g = _sd(tiny_sd, vae=tmp_path / "taesd")
    images = torch.rand(1, 64, 64, 3, requires_grad=True)
    out = g(images, _views(1), 0.5)
    out.loss.backward()
    assert g.encode(images, _views(1)).shape == (1, 4, 8, 8) and float(images.grad.abs().sum()) > 0
    lat = _sd(tiny_sd, latent_path=True)
    assert lat.channels == 4 and lat.vae is None
    x = torch.rand(1, 8, 8, 4, requires_grad=True)
    z = lat.encode(x, _views(1))
    assert torch.allclose(z, LATENT_RANGE * (2 * x.permute(0, 3, 1, 2) - 1))
    lat(x, _views(1), 0.5).loss.backward()
    assert float(x.grad.abs().sum()) > 0


def test_missing_files_and_missing_folder_are_one_clear_line(tiny_sd, tmp_path):
    from engine.errors import InputError

    broken = tmp_path / "broken"
    shutil.copytree(tiny_sd, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(InputError, match="diffusion_pytorch_model.safetensors"):
        _sd(broken)
    r = run_cli("generate", "a red chair", "--model", broken, "--out", tmp_path / "run")
    assert_one_clear_line(r, ["unet/diffusion_pytorch_model.safetensors", "missing"])
    assert not (tmp_path / "run").exists()
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights")
    r = run_cli("generate", "a red chair", "--model", broken, "--out", tmp_path / "run")
    assert_one_clear_line(r, [str(broken), "cannot load the model"])
    r = run_cli("generate", "a red chair", "--model", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert_one_clear_line(r, ["nowhere", "no such Stable Diffusion folder"])
    # without --model the built-in model answers, and it points a prompt outside its world at --model
    r = run_cli("generate", "a DSLR photo of a red chair", "--out", tmp_path / "run")
    assert_one_clear_line(r, ["'dslr'", "--model"])
    r = run_cli("generate", "a red chair", "--guidance", "stable-diffusion", "--out", tmp_path / "run")
    assert_one_clear_line(r, ["--model"])


def test_optimal_denoiser_guidance_pulls_towards_the_known_render():
    """ε* = (x_t − √ᾱ·y)/√(1 − ᾱ): the SDS gradient is w(t)·√ᾱ/√(1 − ᾱ)·(x − y), whatever the
    noise, and zero on a render that is the target."""
    from engine.guidance.known_object import KnownObjectGuidance

    g = KnownObjectGuidance(seed=1)
    views = _views(2, 24)
    y = g.target(views)
    assert y.shape == (2, 24, 24, 3)
    rgb, alpha = g.object.render(views.cameras)
    assert 0.05 < float(alpha.mean()) < 0.9 and float(alpha.max()) == 1.0 and float(alpha.min()) == 0.0
    exact = y.clone().requires_grad_(True)
    g(exact, views, 0.5).loss.backward()
    assert float(exact.grad.abs().max()) < 1e-4
    x = torch.rand(2, 24, 24, 3, requires_grad=True)
    out = g(x, views, 0.5)
    out.loss.backward()
    a = g.alphas_cumprod[out.t].float().reshape(-1, 1, 1, 1)
    grad_x0 = (1 - a) * a.sqrt() / (1 - a).sqrt() * (2 * x.detach() - 2 * y).permute(0, 3, 1, 2)
    # x0 = 2·image − 1, and the loss averages over the batch of 2
    assert torch.allclose(x.grad, (2 * grad_x0 / 2).permute(0, 2, 3, 1), atol=1e-4)
