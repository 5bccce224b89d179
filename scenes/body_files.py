"""SMPL-family files the user gives (`--body-model PATH`), read without chumpy and without a
plain `pickle.load`: the original pickles hold chumpy arrays and scipy sparse matrices, so a
restricted unpickler maps exactly those classes (and numpy's) to inert stand-ins and refuses
every other global — a pickle cannot run code here.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from engine.errors import InputError
from scenes.body import BodyModel


class _Captured:
    """Stand-in for chumpy arrays and scipy sparse matrices: keeps the pickled state only."""

    def __init__(self, *args, **kwargs):
        self.state = None

    def __setstate__(self, state):
        self.state = state

    def array(self, source) -> np.ndarray:
        s = self.state
        if isinstance(s, dict) and "x" in s:  # chumpy.Ch: the value is its 'x'
            return np.asarray(s["x"])
        if isinstance(s, dict) and {"data", "indices", "indptr"} <= set(s):  # scipy CSC/CSR
            shape = tuple(s.get("_shape") or s.get("shape"))
            dense = np.zeros(shape)
            data, indices, indptr = (np.asarray(s[k]) for k in ("data", "indices", "indptr"))
            csr = self.kind.endswith("csr_matrix")
            for i in range(len(indptr) - 1):
                rows = indices[indptr[i]:indptr[i + 1]]
                vals = data[indptr[i]:indptr[i + 1]]
                if csr:
                    dense[i, rows] = vals
                else:
                    dense[rows, i] = vals
            return dense
        raise InputError(source, f"cannot read a {self.kind} object from the pickle")


def _stand_in(kind: str):
    return type("Captured", (_Captured,), {"kind": kind})


_NUMPY = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
          ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
          ("numpy._core.multiarray", "scalar")}


_BUILTINS = {"object": object, "set": set, "frozenset": frozenset, "bytes": bytes, "bytearray": bytearray,
             "complex": complex}  # data types only: none of them runs code


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY:
            import importlib

            try:
                return getattr(importlib.import_module(module), name)
            except ImportError:  # numpy 1 pickles name numpy.core, numpy 2 numpy._core
                return getattr(importlib.import_module(module.replace("numpy.core", "numpy._core")), name)
        if (module, name) in (("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor")):
            return _reconstructor
        if module in ("__builtin__", "builtins") and name in _BUILTINS:
            return _BUILTINS[name]
        if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles from Python 3 carry bytes
            import codecs

            return lambda text, encoding="utf-8": codecs.encode(text, "latin1" if encoding == "latin1" else "utf-8")
        if module.split(".")[0] == "chumpy" or module.startswith("scipy.sparse"):
            return _stand_in(f"{module}.{name}")
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def _reconstructor(cls, base, state):
    """copyreg._reconstructor for the stand-ins only (protocol-2 pickles of Python 2 objects)."""
    if not (isinstance(cls, type) and issubclass(cls, _Captured)):
        raise pickle.UnpicklingError(f"refused to rebuild {cls!r}")
    return cls()


def safe_unpickle(path: Path) -> object:
    data = path.read_bytes()
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise InputError(path, f"pickle refused: {e}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise InputError(path, f"not a readable pickle ({e.__class__.__name__}: {e})") from None


def _arrays(obj: dict, path: Path) -> dict[str, np.ndarray]:
    out = {}
    for k, v in obj.items():
        if isinstance(v, _Captured):
            v = v.array(path)
        if isinstance(v, np.ndarray) or np.isscalar(v):
            out[str(k)] = np.asarray(v)
    return out


def load_smpl(path: str | os.PathLike) -> BodyModel:
    """SMPL / SMPL+H / SMPL-X from the original .pkl (chumpy inside) or an .npz of the same keys."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "body model file not found")
    if path.suffix == ".npz":
        from engine.io import read_npz

        d = read_npz(path, "body model")
    else:
        obj = safe_unpickle(path)
        if not isinstance(obj, dict):
            raise InputError(path, f"expected a dict of arrays, found {type(obj).__name__}")
        d = _arrays(obj, path)
    missing = [k for k in ("v_template", "shapedirs", "J_regressor", "weights", "kintree_table", "f") if k not in d]
    if missing:
        raise InputError(path, f"not an SMPL-family model: missing {', '.join(missing)}")
    f32 = lambda a: torch.as_tensor(np.asarray(a, np.float64), dtype=torch.float32)  # noqa: E731
    try:
        V = d["v_template"].shape[0]
        posedirs = d.get("posedirs", np.zeros((V, 3, 0)))
        parents = np.asarray(d["kintree_table"])[0].astype(np.int64).copy()
        parents[0] = -1
        model = BodyModel(f32(d["v_template"]), f32(d["shapedirs"]), f32(posedirs), f32(d["J_regressor"]),
                          f32(d["weights"]), torch.as_tensor(parents), torch.as_tensor(np.asarray(d["f"], np.int64)),
                          name=path.stem, joint_names=smpl_joint_names(len(parents)))
    except (ValueError, TypeError, IndexError, OverflowError, RuntimeError) as e:
        raise InputError(path, f"body model arrays of the wrong kind or shape ({str(e)[:100]})") from None
    model.check(path)
    if len(parents) >= 22 and len(model.faces):
        model.keypoint_regressor = geometric_keypoint_regressor(model)
        from engine.data.keypoints import KEYPOINTS

        model.keypoint_names = KEYPOINTS
    return model


def load_gmm_prior(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """SMPLify's GMM pose prior (gmm_08.pkl format): means (K, D), covars (K, D, D), weights (K,)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "GMM prior file not found")
    obj = safe_unpickle(path)
    d = _arrays(obj, path) if isinstance(obj, dict) else {}
    if not {"means", "covars", "weights"} <= set(d):
        raise InputError(path, "not a GMM prior: expected means, covars and weights")
    m, c, w = d["means"], d["covars"], d["weights"]
    if m.ndim != 2 or c.shape != (m.shape[0], m.shape[1], m.shape[1]) or w.shape != (m.shape[0],):
        raise InputError(path, f"GMM shapes do not agree: means {m.shape}, covars {c.shape}, weights {w.shape}")
    try:
        out = {"means": m.astype(np.float64), "covars": c.astype(np.float64), "weights": w.astype(np.float64)}
    except (ValueError, TypeError) as e:
        raise InputError(path, f"GMM arrays are not numbers ({str(e)[:80]})") from None
    if not all(np.isfinite(a).all() for a in out.values()) or (out["weights"] <= 0).any():
        raise InputError(path, "GMM with NaN/infinite values or non-positive weights")
    return out


SMPL_JOINT_NAMES = ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
                    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
                    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist")


def smpl_joint_names(num_joints: int) -> tuple[str, ...]:
    """SMPL, SMPL+H and SMPL-X share their first 22 joints; the rest (hands, jaw, eyes) stay unnamed."""
    names = list(SMPL_JOINT_NAMES[:num_joints])
    if num_joints == 24:
        names += ["left_hand", "right_hand"]
    names += [f"joint{j}" for j in range(len(names), num_joints)]
    return tuple(names)


def geometric_keypoint_regressor(model: BodyModel) -> torch.Tensor:
    """COCO-17 + feet (our KEYPOINTS order) for a model in SMPL's axes (y up, facing +z, left +x):
    limb keypoints are the model's joints (their regressor rows); the face and feet points are picked
    on the rest mesh by where they are — the most forward head vertex is the nose, and so on — so no
    vertex list from a licensed source is needed."""
    from engine.data.keypoints import KEYPOINTS

    names = model.joint_names
    V = model.v_template.shape[0]
    v = model.v_template.double().numpy()
    w = model.weights.double().numpy()
    out = torch.zeros(len(KEYPOINTS), V, dtype=model.v_template.dtype)

    def one_hot(k, vertex):
        out[KEYPOINTS.index(k), int(vertex)] = 1.0

    joint_of = {"shoulder": "shoulder", "elbow": "elbow", "wrist": "wrist", "hip": "hip", "knee": "knee",
                "ankle": "ankle"}
    for side in ("left", "right"):
        for part in joint_of:
            out[KEYPOINTS.index(f"{side}_{part}")] = model.J_regressor[names.index(f"{side}_{part}")]
    head = np.flatnonzero(w[:, names.index("head")] > 0.5)
    nose = head[np.argmax(v[head, 2])]
    one_hot("nose", nose)
    ny = v[nose, 1]
    for side, sign in (("left", 1), ("right", -1)):
        band = head[(v[head, 1] > ny + 0.015) & (v[head, 1] < ny + 0.06) & (sign * v[head, 0] > 0.02)
                    & (sign * v[head, 0] < 0.05)]
        one_hot(f"{side}_eye", band[np.argmax(v[band, 2])] if len(band) else nose)
        level = head[np.abs(v[head, 1] - (ny + 0.03)) < 0.03]
        one_hot(f"{side}_ear", level[np.argmax(sign * v[level, 0])])
        foot = np.flatnonzero(w[:, names.index(f"{side}_ankle")] + w[:, names.index(f"{side}_foot")] > 0.5)
        front = foot[v[foot, 2] > v[foot, 2].max() - 0.02]
        one_hot(f"{side}_big_toe", front[np.argmin(sign * v[front, 0])])
        toes = foot[v[foot, 2] > v[foot, 2].max() - 0.05]
        one_hot(f"{side}_small_toe", toes[np.argmax(sign * v[toes, 0])])
        sole = foot[v[foot, 1] < v[foot, 1].min() + 0.03]
        one_hot(f"{side}_heel", sole[np.argmin(v[sole, 2])])
    return out
