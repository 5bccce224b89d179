"""The shipped networks' files: safetensors with the config in the metadata, half precision
(bf16) to keep the repository small; loaded to float32."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from engine.errors import InputError

HERE = Path(__file__).parent / "weights"
MODEL_FILE = HERE / "objects64.safetensors"
JUDGE_FILE = HERE / "judge.safetensors"


def save_network(module: torch.nn.Module, config: dict, path: Path, note: dict | None = None) -> Path:
    from safetensors.torch import save_file

    from engine.io import atomic_path

    state = {k: v.detach().to(torch.bfloat16 if v.is_floating_point() else v.dtype).contiguous()
             for k, v in module.state_dict().items()}
    meta = {"config": json.dumps(config), **{k: json.dumps(v) for k, v in (note or {}).items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def read_network(path: Path) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """(config, float32 state, other metadata), or one line naming the file's problem."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "missing: the built-in guidance weights are not installed (reinstall lumen3d, or "
                               "train them: lumen3d train guidance)")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        config = json.loads(meta.pop("config"))
        other = {k: json.loads(v) for k, v in meta.items()}
    except Exception as e:  # damaged, truncated, or not ours
        raise InputError(path, f"not a readable weights file ({e.__class__.__name__}: {str(e)[:120]})") from None
    return config, {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, other
