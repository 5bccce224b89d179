"""A tiny Stable Diffusion folder with random weights, built from diffusers' own dummy configs and
saved with `save_pretrained`, so tests load it by path exactly as a user's folder is loaded."""
from __future__ import annotations

import json
from pathlib import Path


def byte_vocab() -> dict[str, int]:
    """CLIP's byte-level alphabet (GPT-2's bytes-to-unicode map), each symbol alone and word-final,
    after the special tokens."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    tokens = ["<|startoftext|>", "<|pad|>", "<|endoftext|>"]
    tokens += [chr(c) for c in cs] + [chr(c) + "</w>" for c in cs]
    return {t: i for i, t in enumerate(tokens)}


def make_tiny_sd(folder: Path, seed: int = 0, prediction_type: str = "epsilon") -> Path:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(block_out_channels=(4, 8), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=8,
                                norm_num_groups=2, attention_head_dim=2)
    vae = AutoencoderKL(block_out_channels=[4, 4, 4, 4], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                        latent_channels=4, norm_num_groups=2, sample_size=64)
    text = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=8,
                                        intermediate_size=16, num_attention_heads=2, num_hidden_layers=2,
                                        vocab_size=len(byte_vocab()), max_position_embeddings=77))
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, prediction_type=prediction_type)
    tok_dir = folder / "tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    (tok_dir / "vocab.json").write_text(json.dumps(byte_vocab()))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77,
                              pad_token="<|pad|>")
    for name, part in (("unet", unet), ("vae", vae), ("text_encoder", text), ("scheduler", sched),
                       ("tokenizer", tokenizer)):
        part.save_pretrained(folder / name)
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"]}))
    return folder
