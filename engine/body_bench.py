"""Synthetic body-fitting benchmark with ground truth: bodies of the open model with random shapes,
smooth motions within human joint ranges; detector-like keypoints. Scores per-frame and temporal
fits with the usual metrics, timing `engine.body_fit.fit`, the very call `lumen3d fit-body` makes.

Two protocols: "studio" (the first one: a 1000×1000 camera at f = 1000 px, σ 3 px noise, 10% of
points dropped) and "street", shaped like a phone video: 1280×720 at f = 1280 px (the job's default
focal length), people 4–7 m away turning around now and then, and what detectors do besides noise —
whole frames missed, gross outliers, left and right swapped.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from engine.body_fit import FitConfig, body_vertices, fit, procrustes, project
from engine.body_priors import BodyPriors
from scenes.body import BodyModel

# the 14 joints of the usual 3D-pose protocols (LSP's), named as in the model
EVAL_JOINTS = ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_shoulder",
               "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "neck", "head")
IMAGE = 1000
FOCAL = 1000.0
PROTOCOLS = {
    "studio": dict(width=1000, height=1000, focal=1000.0, depth=(3.0, 5.0)),
    "street": dict(width=1280, height=720, focal=1280.0, depth=(4.0, 7.0), missed=0.03, outliers=0.02, swaps=0.01,
                   turns=True),
}


def _motion(names, T: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """(T, J, 3) anatomical angles (a1, a2, a3): segments of walking, waving, squatting, reaching and
    jumping jacks with random amplitudes and rates, cross-faded over half a second, plus a random stance."""
    J = len(names)
    t = np.arange(T) / fps
    ix = {n: i for i, n in enumerate(names)}

    def seg(kind):
        a = np.zeros((T, J, 3))
        w = 2 * math.pi * rng.uniform(0.5, 1.1)
        amp = rng.uniform(0.6, 1.2)
        s = np.sin(w * t + rng.uniform(0, 2 * math.pi))
        c = np.sin(w * t + rng.uniform(0, 2 * math.pi) + math.pi / 2)
        pos = 0.5 * (1 + s)
        if kind == "walk":
            for side, sign in (("left", 1), ("right", -1)):
                a[:, ix[f"{side}_hip"], 0] = -0.45 * amp * sign * s
                a[:, ix[f"{side}_knee"], 0] = 0.2 + 0.5 * amp * 0.5 * (1 + sign * c)
                a[:, ix[f"{side}_shoulder"], 0] = 0.4 * amp * sign * s
                a[:, ix[f"{side}_elbow"], 0] = -0.3 - 0.3 * amp * 0.5 * (1 - sign * s)
        elif kind == "wave":
            side = rng.choice(["left", "right"])
            sign = 1 if side == "left" else -1
            a[:, ix[f"{side}_shoulder"], 1] = sign * 1.9 * amp
            a[:, ix[f"{side}_elbow"], 0] = -1.0 - 0.5 * pos
            a[:, ix[f"{side}_shoulder"], 2] = sign * 0.3 * s
        elif kind == "squat":
            for side in ("left", "right"):
                a[:, ix[f"{side}_hip"], 0] = -1.3 * amp * pos
                a[:, ix[f"{side}_knee"], 0] = 2.0 * amp * pos
                a[:, ix[f"{side}_ankle"], 0] = -0.35 * amp * pos
                a[:, ix[f"{side}_shoulder"], 0] = -1.2 * pos
            a[:, ix["spine2"], 0] = -0.3 * pos
        elif kind == "reach":
            side = rng.choice(["left", "right"])
            a[:, ix[f"{side}_shoulder"], 0] = -1.6 * amp * pos
            a[:, ix[f"{side}_elbow"], 0] = -0.8 * (1 - pos)
            a[:, ix["spine1"], 0] = -0.3 * pos
            a[:, ix["spine2"], 2] = 0.3 * s
        else:  # jumping jacks
            for side, sign in (("left", 1), ("right", -1)):
                a[:, ix[f"{side}_shoulder"], 1] = sign * 2.0 * amp * pos
                a[:, ix[f"{side}_hip"], 1] = sign * 0.35 * amp * pos
        return a

    kinds = ["walk", "wave", "squat", "reach", "jacks"]
    seg_len = int(rng.uniform(2.0, 3.5) * fps)
    out = np.zeros((T, J, 3))
    weight = np.zeros(T)
    start = 0
    while start < T:
        w = np.zeros(T)
        fade = int(0.5 * fps)
        lo, hi = max(0, start - fade), min(T, start + seg_len + fade)
        w[lo:hi] = 1.0
        ramp = np.clip(np.minimum(np.arange(T) - lo, hi - 1 - np.arange(T)) / max(fade, 1), 0, 1)
        w *= np.sin(0.5 * math.pi * ramp) ** 2 if lo > 0 or hi < T else 1.0
        out += w[:, None, None] * seg(rng.choice(kinds))
        weight += w
        start += seg_len
    out /= np.maximum(weight, 1e-6)[:, None, None]
    stance = rng.normal(0, 0.12, (J, 3))  # a person's own posture, held through the sequence
    stance[0] = 0
    return out + stance


def synthetic_sequence(model: BodyModel, priors: BodyPriors, T: int, rng: np.random.Generator, fps: float = 30.0,
                       noise_px: float = 3.0, dropout: float = 0.1, width: int = IMAGE, height: int = IMAGE,
                       focal: float = FOCAL, depth: tuple[float, float] = (3.0, 5.0), missed: float = 0.0,
                       outliers: float = 0.0, swaps: float = 0.0, turns: bool = False) -> dict:
    """A sequence with ground truth. missed: frames with no detection; outliers: points off by
    σ 40 px; swaps: frames with left and right exchanged; turns: a turn through 180° over 2 s."""
    names = model.joint_names
    S = min(10, model.num_betas)
    betas = np.clip(rng.normal(0, 1, S), -2, 2)
    anat = _motion(names, T, fps, rng)
    anat = np.clip(anat, priors.lo.numpy()[None], priors.hi.numpy()[None])
    pose = np.einsum("jac,tja->tjc", priors.frames.numpy(), anat)  # frames are orthonormal: back to axis-angle
    from scipy.spatial.transform import Rotation

    yaw = np.radians(rng.uniform(-80, 80) + rng.uniform(-25, 25) * np.sin(2 * math.pi * np.arange(T) / T))
    if turns and T > 2 * fps:  # turn around somewhere in the sequence, and stay turned
        at = rng.integers(0, T - int(2 * fps))
        ramp = np.clip((np.arange(T) - at) / (2 * fps), 0, 1)
        yaw = yaw + math.pi * (0.5 - 0.5 * np.cos(math.pi * ramp)) * rng.choice([-1, 1])
    facing = Rotation.from_rotvec([math.pi, 0, 0])
    roots = [(facing * Rotation.from_rotvec([rng.normal(0, 0.03), y, rng.normal(0, 0.03)])).as_rotvec() for y in yaw]
    pose[:, 0] = np.array(roots)
    depth = rng.uniform(*depth)
    drift = rng.uniform(-0.4, 0.4, 3) * np.array([1, 0, 1])
    transl = np.array([rng.uniform(-0.4, 0.4), 0.2, depth]) + np.linspace(-0.5, 0.5, T)[:, None] * drift
    m = model.to(torch.float64)
    with torch.no_grad():
        j3, k3 = m.joints_and_keypoints(torch.as_tensor(betas).expand(T, S), torch.as_tensor(pose),
                                        torch.as_tensor(transl))
    K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    uv = project(k3, torch.as_tensor(K).expand(T, 3, 3)).numpy()
    kp = np.concatenate([uv + rng.normal(0, noise_px, uv.shape), rng.uniform(0.5, 1.0, uv.shape[:2] + (1,))], -1)
    if outliers:
        bad = rng.random(uv.shape[:2]) < outliers
        kp[bad, :2] += rng.normal(0, 40.0, (int(bad.sum()), 2))
    kp[rng.random(uv.shape[:2]) < dropout, 2] = 0.0
    if missed:
        kp[rng.random(T) < missed, :, 2] = 0.0
    outside = (uv < 0).any(-1) | (uv[..., 0] >= width) | (uv[..., 1] >= height)
    kp[outside, 2] = 0.0
    if swaps:
        from engine.data.keypoints import KEYPOINTS

        mirror = [KEYPOINTS.index(n.replace("left", "RIGHT").replace("right", "left").replace("RIGHT", "right"))
                  for n in KEYPOINTS]
        flip = rng.random(T) < swaps
        kp[flip] = kp[flip][:, mirror]
    return {"betas": np.tile(betas, (T, 1)), "pose": pose, "transl": transl, "keypoints": kp, "K": K, "joints": j3.numpy()}


def _metrics(model: BodyModel, gt: dict, res, names) -> dict:
    idx = [names.index(n) for n in EVAL_JOINTS]
    hips = [names.index("left_hip"), names.index("right_hip")]
    m = model.to(torch.float64)
    with torch.no_grad():
        pj, _ = m.joints_and_keypoints(res.betas, res.pose, res.transl)
    pj = pj.numpy()
    gj = gt["joints"]
    pr = pj[:, idx] - pj[:, hips].mean(1, keepdims=True)
    gr = gj[:, idx] - gj[:, hips].mean(1, keepdims=True)
    mpjpe = np.linalg.norm(pr - gr, axis=-1).mean(1)
    pa = np.array([np.linalg.norm(procrustes(p, g) - g, axis=-1).mean() for p, g in zip(pr, gr)])
    from engine.body_fit import FitResult

    gres = FitResult(torch.as_tensor(gt["betas"]), torch.as_tensor(gt["pose"]), torch.as_tensor(gt["transl"]),
                     np.ones(len(gj), bool), "", 0.0)
    pv, gv = body_vertices(model, res), body_vertices(model, gres)
    pelvis = names.index("pelvis")
    pve = np.linalg.norm((pv - pj[:, pelvis:pelvis + 1]) - (gv - gj[:, pelvis:pelvis + 1]), axis=-1).mean(1)
    acc = np.linalg.norm((pr[2:] - 2 * pr[1:-1] + pr[:-2]) - (gr[2:] - 2 * gr[1:-1] + gr[:-2]), axis=-1).mean(1)
    return {"mpjpe": mpjpe * 1000, "pa_mpjpe": pa * 1000, "pve": pve * 1000, "accel": acc * 1000}


def run_bench(model: BodyModel, sequences: int, frames: int, seed: int, gmm=None, progress=None,
              protocol: str = "street") -> dict:
    priors = BodyPriors(model.to(torch.float64), gmm)
    rng = np.random.default_rng(seed)
    data = [synthetic_sequence(model, priors, frames, rng, **PROTOCOLS[protocol]) for _ in range(sequences)]
    out = {}
    for mode, temporal in (("per_frame", False), ("temporal", True)):
        cfg = FitConfig(temporal=temporal)
        parts, seconds = [], 0.0
        for gt in data:
            res = fit(model, gt["keypoints"], gt["K"], cfg, gmm=gmm, progress=progress)
            seconds += res.seconds
            parts.append(_metrics(model, gt, res, model.joint_names))
            prior = res.prior
        agg = {k: float(np.concatenate([p[k] for p in parts]).mean()) for k in parts[0]}
        agg.update(seconds=seconds, frames_per_second=sequences * frames / seconds, prior=prior)
        out[mode] = agg
    return out
