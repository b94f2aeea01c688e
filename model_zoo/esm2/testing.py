"""Tiny random-weight ESM-2 checkpoints in the official formats, for tests and demos.

The network is fair-esm's ``ESM2`` (the reference implementation, in the
``test`` extra) with every parameter drawn at random (no zero bias hides a
mapping bug), saved exactly as the published files are laid out: fair-esm's ``<name>.pt`` (``{"model": ..., "cfg": {"model":
Namespace}}``, the encoder under ``encoder.sentence_encoder.``) plus
``<name>-contact-regression.pt``, or a Hugging Face ``EsmForMaskedLM``
directory (config.json + model.safetensors).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint import hf_key_for

TINY_NAME = "esm2_t6_8M_UR50D"
"""The variant a tiny checkpoint is stored under unless told otherwise."""


@dataclass(frozen=True)
class TinyEsm2:
    """The shape and seed of a tiny random ESM-2."""

    num_layers: int = 3
    embed_dim: int = 48
    attention_heads: int = 4
    seed: int = 0


def random_fair_esm2(tiny: TinyEsm2 = TinyEsm2()) -> tuple[Any, Any]:
    """fair-esm's own ``ESM2`` of `tiny`'s shape with every parameter drawn at random, and its alphabet.

    The weights are drawn inside fair-esm's module (the reference implementation, in the
    ``test`` extra), so every checkpoint written here holds the tensors the tests'
    measured parity bounds were taken on.
    """
    import esm

    torch.manual_seed(tiny.seed)
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    model = esm.model.esm2.ESM2(
        num_layers=tiny.num_layers,
        embed_dim=tiny.embed_dim,
        attention_heads=tiny.attention_heads,
        alphabet=alphabet,
        token_dropout=True,
    )
    randomize_parameters(model)
    return model.eval(), alphabet


def randomize_parameters(model: torch.nn.Module) -> None:
    """Draw every parameter at random (LayerNorm scales near 1), so no zero bias hides a mapping bug."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p) if p.dim() > 1 else 0.05 * torch.randn_like(p))


def write_fair_esm_checkpoint(
    folder: str | Path, name: str = TINY_NAME, tiny: TinyEsm2 = TinyEsm2(), with_regression: bool = True
) -> Path:
    """Write ``<folder>/<name>.pt`` (and ``<name>-contact-regression.pt``) in fair-esm's published layout.

    Args:
        folder: where the files go (created).
        name: the variant name the files are named after.
        tiny: shape and seed of the random network.
        with_regression: also write the contact-regression file.

    Returns:
        The path of the ``.pt`` file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = random_fair_esm2(tiny)[0].state_dict()
    body: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("contact_head."):
            continue
        # Official files keep the encoder under these prefixes; fair-esm strips them.
        prefix = "encoder." if key.startswith("lm_head.") else "encoder.sentence_encoder."
        body[prefix + key] = value.clone()
    cfg = argparse.Namespace(
        encoder_layers=tiny.num_layers,
        encoder_embed_dim=tiny.embed_dim,
        encoder_ffn_embed_dim=4 * tiny.embed_dim,
        encoder_attention_heads=tiny.attention_heads,
        token_dropout=True,
        max_positions=1024,
    )
    path = folder / f"{name}.pt"
    torch.save({"model": body, "cfg": {"model": cfg}, "args": None}, path)
    if with_regression:
        regression = {k: v.clone() for k, v in state.items() if k.startswith("contact_head.")}
        torch.save({"model": regression}, folder / f"{name}-contact-regression.pt")
    return path


def write_hf_esm_dir(folder: str | Path, tiny: TinyEsm2 = TinyEsm2()) -> Path:
    """Write the same random weights as `write_fair_esm_checkpoint` as an ``EsmForMaskedLM`` directory."""
    from transformers import EsmConfig, EsmForMaskedLM

    config = EsmConfig(
        vocab_size=33,
        hidden_size=tiny.embed_dim,
        num_hidden_layers=tiny.num_layers,
        num_attention_heads=tiny.attention_heads,
        intermediate_size=4 * tiny.embed_dim,
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
    for key, value in random_fair_esm2(tiny)[0].state_dict().items():
        new = hf_key_for(key)
        if new is not None:
            mapped[new] = value.clone()
    missing, unexpected = hf.load_state_dict(mapped, strict=False)
    missing = [m for m in missing if not m.endswith(("inv_freq", "position_ids"))]
    if missing or unexpected:
        raise RuntimeError(f"HF key map incomplete: missing={missing} unexpected={unexpected}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(folder)
    return folder


def tiny_checkpoint(folder: str | Path, name: str = TINY_NAME) -> Path:
    """A tiny random ESM-2 in fair-esm's published layout (with contact regression), stored as `name`.

    It is not the published shape, so loading it warns (`ArchitectureWarning`).
    """
    return write_fair_esm_checkpoint(folder, name)
