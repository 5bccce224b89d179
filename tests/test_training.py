"""The one training loop and its parts, on a method small enough to reason about: budget,
checkpoints and exact resume, curves (TensorBoard and curves.png), evaluation; the resume marks on
config fields; cameras, camera paths and backgrounds; old checkpoints still export."""
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import quality, run_cli


class Crash(Exception):
    pass


def _toy(crash_at=None):
    """A Method that learns one colour (and a learned background) to match a photo: the smallest
    thing with parameters, an optimiser, randomness, test views and a render."""
    from engine.cameras import Cameras
    from engine.data.cameras import Intrinsics
    from engine.rendering import RenderOutput
    from engine.rendering.background import LearnedBackground
    from engine.training.method import Method

    class Colour(Method):
        kind = "toy"

        def __init__(self):
            self.colour = torch.nn.Parameter(torch.zeros(3))
            self.background = LearnedBackground()
            self.opt = torch.optim.Adam([self.colour, *self.background.parameters()], lr=0.2)
            self.gen = torch.Generator().manual_seed(0)
            self.target = torch.tensor([0.8, 0.3, 0.1])
            self.camera = Cameras.from_c2w(np.eye(4), Intrinsics(4, 3, 4, 4, 2, 1.5))

        def train_step(self, step, fraction):
            if step == crash_at:
                raise Crash()
            noise = 0.01 * torch.randn(3, generator=self.gen)  # randomness that resume must continue
            for g in self.opt.param_groups:
                g["lr"] = 0.2 * (1 - 0.5 * fraction(step))
            loss = ((torch.sigmoid(self.colour) - self.target - noise) ** 2).sum() \
                + ((self.background.sample() - 0.5) ** 2).sum()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            return {"loss": loss.detach(), "lr": self.opt.param_groups[0]["lr"]}

        def state_dict(self):
            return {"colour": self.colour.detach().clone(), "background": self.background.state_dict(),
                    "opt": self.opt.state_dict(), "gen": self.gen.get_state()}

        def load_state_dict(self, d, source):
            self.colour.data.copy_(d["colour"])
            self.background.load_state_dict(d["background"])
            self.opt.load_state_dict(d["opt"])
            self.gen.set_state(d["gen"])

        def render(self, camera):
            w, h = camera.size
            return RenderOutput(rgb=torch.sigmoid(self.colour).expand(h, w, 3), alpha=torch.ones(h, w),
                                depth=torch.ones(h, w))

        def test_views(self):
            return [(self.camera, lambda: self.target.expand(3, 4, 3))]

    return Colour()


def _loop(tmp_path: Path, name: str, crash_at=None, **options):
    from engine.runs import Run
    from engine.training.loop import TrainingLoop
    from engine.training.options import TrainOptions

    options = {"max_steps": 40, "checkpoint_every": 20, "video_frames": 0, **options}
    return TrainingLoop(_toy(crash_at), TrainOptions(**options), Run(tmp_path / name, "toy"))


def test_the_loop_resumes_exactly_and_keeps_its_curves(tmp_path):
    straight = _loop(tmp_path, "a")
    straight.train()
    metrics = straight.finish()
    assert metrics["steps"] == 40 and metrics["test"]["views"] == 1
    quality("toy method 40 steps: test PSNR dB", metrics["test"]["psnr"], ">", 25)
    assert (tmp_path / "a" / "renders" / "test" / "0000.png").is_file()
    assert (tmp_path / "a" / "renders" / "depth" / "0000.png").is_file()

    crashed = _loop(tmp_path, "b", crash_at=35)  # after logging step 30, checkpointed at step 20
    with pytest.raises(Crash):
        crashed.train()
    crashed.curves.flush()  # step 30's point reached the event file before the crash
    resumed = _loop(tmp_path, "b", resume=True)
    resumed.resume()
    assert resumed.step == 20  # the last checkpoint before the crash
    resumed.train()
    resumed.finish()
    assert torch.equal(straight.method.colour, resumed.method.colour)
    assert torch.equal(straight.method.background.logit, resumed.method.background.logit)
    assert straight.curves.history["loss"] == resumed.curves.history["loss"]  # steps 10..40, once each
    assert [s for s, _ in resumed.curves.history["lr"]] == [10, 20, 30, 40]

    from PIL import Image

    assert Image.open(tmp_path / "b" / "renders" / "curves.png").size[0] > 300
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "b" / "tensorboard"))
    events.Reload()
    steps = [e.step for e in events.Scalars("train/loss")]
    assert steps == [10, 20, 30, 40]  # what the crashed run logged after step 20 was purged


def test_the_budget_fraction_and_the_checkpoint_layout(tmp_path):
    loop = _loop(tmp_path, "c", max_steps=100, max_minutes=1.0)
    loop.train_seconds = 45.0
    assert loop.fraction(10) == 0.75 and loop.fraction(90) == 0.9 and loop.fraction(200) == 1.0
    loop.save()
    ckpt = torch.load(tmp_path / "c" / "checkpoints" / "last.pt", weights_only=True)
    assert set(ckpt) == {"kind", "meta", "config", "state"} and ckpt["kind"] == "toy"
    assert ckpt["config"]["max_minutes"] == 1.0 and "resume_fingerprint" in ckpt["meta"]


def test_resume_fingerprint_follows_the_marks_on_the_fields(tmp_path):
    from engine.methods.configs import GaussiansConfig, NerfConfig
    from engine.runs import resume_fingerprint

    base = dict(data=tmp_path, max_steps=10)
    same = resume_fingerprint(GaussiansConfig(**base))
    for changed in ({"max_minutes": 3.0}, {"eval_views": 2}, {"video_frames": 0}, {"checkpoint_every": 1},
                    {"resume": True}, {"live_view": "png"}, {"overwrite": True}, {"out": tmp_path / "x"}):
        assert resume_fingerprint(GaussiansConfig(**base, **changed)) == same, changed
    for changed in ({"max_steps": 11}, {"lr_means": 1e-3}, {"strategy": "mcmc"}, {"seed": 1}):
        assert resume_fingerprint(GaussiansConfig(**{**base, **changed})) != same, changed
    assert resume_fingerprint(NerfConfig(**base, mesh_resolution=0)) == resume_fingerprint(NerfConfig(**base))
    assert resume_fingerprint(NerfConfig(**base, lr=0.5)) != resume_fingerprint(NerfConfig(**base))


def test_cameras_from_a_dataset_and_random_orbits(data):
    from engine.cameras import Cameras, camera_path, focus_point, sample_orbit_cameras
    from engine.data import load_dataset

    scene = load_dataset(data / "lego", downscale=8)
    cams = Cameras.from_frames(scene.frames[:3])
    assert len(cams) == 3 and cams.size == (100, 100) and cams.K.shape == (3, 3, 3)
    assert torch.allclose(cams.viewmats.double() @ cams.c2w, torch.eye(4, dtype=torch.float64), atol=1e-5)
    o, d = cams.rays(1)
    f = scene.frames[1]
    k = len(o) // 2 + 50  # pixel (50, 50): its ray hits the point the camera projects there
    assert torch.allclose(d.norm(dim=1), torch.ones(len(d)), atol=1e-5)
    uv = f.intrinsics.project((o[k] + 3 * d[k]).double().numpy() @ f.c2w[:3, :3] - f.c2w[:3, 3] @ f.c2w[:3, :3])
    assert np.allclose(uv, [50.5, 50.5], atol=1e-3)
    assert len(cams[1:]) == 2 and cams[[2]].intrinsics[0] == scene.frames[2].intrinsics

    c2ws = np.stack([fr.c2w for fr in scene.frames])
    path = camera_path(c2ws, 12)
    focus = focus_point(c2ws)
    for m in path:  # an orbit: every camera looks at the focus point
        to_focus = (focus - m[:3, 3]) / np.linalg.norm(focus - m[:3, 3])
        assert to_focus @ m[:3, 2] > 0.999

    views, azim, elev = sample_orbit_cameras(16, 64, 48, torch.Generator().manual_seed(0), elevation_deg=(0, 30))
    assert len(views) == 16 and views.size == (64, 48) and (azim >= 0).all() and (azim < 360).all()
    assert ((elev >= 0) & (elev <= 30)).all()
    for m, k in zip(views.c2w.numpy(), views.intrinsics):  # the origin is in the middle of every image
        cam = -m[:3, 3] @ m[:3, :3]
        assert np.allclose(k.project(cam), [32, 24], atol=1e-6)
        assert 3.0 <= np.linalg.norm(m[:3, 3]) <= 3.5


def test_backgrounds_are_parts_with_their_own_state():
    from engine.rendering.background import LearnedBackground, RandomBackground, SolidBackground, composite

    g = torch.Generator().manual_seed(0)
    assert SolidBackground((1, 0, 0)).sample((5,)).shape == (5, 3)
    r = RandomBackground()
    a, b = r.sample((), g), r.sample((4,), g)
    assert a.shape == (3,) and b.shape == (4, 3) and not torch.equal(b[0], b[1])
    learned = LearnedBackground((0.2, 0.4, 0.6))
    assert torch.allclose(learned.sample(), torch.tensor([0.2, 0.4, 0.6]))
    learned.sample((2,)).sum().backward()
    assert learned.logit.grad is not None
    rgba = torch.tensor([[[1.0, 0.0, 0.0, 0.25]]])
    assert torch.allclose(composite(rgba, torch.tensor([0.0, 0.0, 1.0])), torch.tensor([[[0.25, 0.0, 0.75]]]))
    assert np.allclose(composite(rgba.numpy(), (0, 0, 1)), [[[0.25, 0.0, 0.75]]])


def test_checkpoints_of_the_trainers_before_the_one_loop_still_export(tmp_path):
    from scenes.gaussians import load_ply
    from tests.test_gaussians import random_params

    params = random_params(5, 0)
    run = tmp_path / "old"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"step": 3, "params": params}, run / "checkpoints" / "last.pt")
    r = run_cli("export", run, "--format", "ply", "--out", tmp_path / "old.ply")
    assert r.returncode == 0, r.stderr[-2000:]
    back = load_ply(tmp_path / "old.ply")
    assert torch.allclose(back["means"], params["means"].detach())
