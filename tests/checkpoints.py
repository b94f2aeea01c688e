"""Small random-weight checkpoints written in the official formats.

Weights cannot be downloaded here, so the tests make their own: a fair-esm
ESM2 module with every parameter randomised is saved exactly as the official
``esm2_*.pt`` files are laid out (``{"model": ..., "cfg": {"model": Namespace}}``
plus ``<name>-contact-regression.pt``), and the same tensors are saved as a
Hugging Face ``EsmForMaskedLM`` directory (config.json + model.safetensors).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from bionemo_lite.zoo.esm2.checkpoint import hf_key_for


@dataclass(frozen=True)
class TinyEsm2:
    num_layers: int = 3
    embed_dim: int = 48
    attention_heads: int = 4
    seed: int = 0


def random_fair_esm2(arch: TinyEsm2):
    """A fair-esm ESM2 with every parameter drawn at random (no zero biases to hide bugs)."""
    import esm

    torch.manual_seed(arch.seed)
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    model = esm.model.esm2.ESM2(
        num_layers=arch.num_layers,
        embed_dim=arch.embed_dim,
        attention_heads=arch.attention_heads,
        alphabet=alphabet,
        token_dropout=True,
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p) if p.dim() > 1 else 0.05 * torch.randn_like(p))
    return model.eval(), alphabet


def write_fair_esm_checkpoint(folder: Path, name: str, arch: TinyEsm2 = TinyEsm2(), with_regression: bool = True) -> Path:
    """Write ``<folder>/<name>.pt`` (+ contact regression) in the official layout."""
    model, _ = random_fair_esm2(arch)
    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    body = {}
    for k, v in state.items():
        if k.startswith("contact_head."):
            continue
        # Official files keep the encoder under these prefixes; fair-esm strips them.
        prefix = "encoder." if k.startswith("lm_head.") else "encoder.sentence_encoder."
        body[prefix + k] = v.clone()
    cfg = argparse.Namespace(
        encoder_layers=arch.num_layers,
        encoder_embed_dim=arch.embed_dim,
        encoder_ffn_embed_dim=4 * arch.embed_dim,
        encoder_attention_heads=arch.attention_heads,
        token_dropout=True,
        max_positions=1024,
    )
    path = folder / f"{name}.pt"
    torch.save({"model": body, "cfg": {"model": cfg}, "args": None}, path)
    if with_regression:
        reg = {k: v.clone() for k, v in state.items() if k.startswith("contact_head.")}
        torch.save({"model": reg}, folder / f"{name}-contact-regression.pt")
    return path


def write_hf_esm_dir(folder: Path, arch: TinyEsm2 = TinyEsm2()) -> Path:
    """Write the same random weights as an ``EsmForMaskedLM`` directory."""
    from transformers import EsmConfig, EsmForMaskedLM

    model, _ = random_fair_esm2(arch)
    config = EsmConfig(
        vocab_size=33,
        hidden_size=arch.embed_dim,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.attention_heads,
        intermediate_size=4 * arch.embed_dim,
        max_position_embeddings=1026,
        position_embedding_type="rotary",
        token_dropout=True,
        mask_token_id=32,
        pad_token_id=1,
        emb_layer_norm_before=False,
        layer_norm_eps=1e-5,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        hidden_act="gelu",
        vocab_list=None,
    )
    hf = EsmForMaskedLM(config).eval()
    mapped = {}
    for k, v in model.state_dict().items():
        new = hf_key_for(k)
        if new is not None:
            mapped[new] = v.clone()
    missing, unexpected = hf.load_state_dict(mapped, strict=False)
    missing = [m for m in missing if not m.endswith(("inv_freq", "position_ids"))]
    if missing or unexpected:
        raise RuntimeError(f"HF key map incomplete: missing={missing} unexpected={unexpected}")
    folder.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(folder)
    return folder
