"""Tiny random-weight ESM-1b / ESM-1v checkpoints in the official formats, for tests and demos.

The network is fair-esm's own ``ProteinBertModel`` (``roberta_large``, the
reference implementation, in the ``test`` extra) with every parameter drawn at
random, saved as the published files are laid out: ``<name>.pt``
(``{"args": Namespace(arch="roberta_large", encoder_layers=...), "model": ...}``,
the encoder under ``encoder.sentence_encoder.``, the LM head sharing the token
embedding's tensor) plus ``<name>-contact-regression.pt`` for ESM-1b; or a
Hugging Face ``EsmForMaskedLM`` folder converted from what fair-esm loads (as
transformers' conversion script does). The ensemble's layout is a folder with
one ``<member>.pt`` per ESM-1v model (or one Hugging Face ``<member>/`` folder each).
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from bionemo_lite.registry import get_spec
from bionemo_lite.zoo.esm2.checkpoint import REGRESSION_SUFFIX, hf_key_for
from bionemo_lite.zoo.esm2.testing import randomize_parameters

from . import ESM1B, ESM1V_MEMBERS, MAX_POSITIONS

TINY_NAME = ESM1B
"""The variant a tiny checkpoint is stored under unless told otherwise."""


@dataclass(frozen=True)
class TinyEsm1:
    """The shape and seed of a tiny random ESM-1b."""

    num_layers: int = 3
    embed_dim: int = 48
    attention_heads: int = 4
    max_positions: int = MAX_POSITIONS
    seed: int = 0


def random_fair_esm1b(tiny: TinyEsm1 = TinyEsm1()) -> tuple[Any, Any]:
    """fair-esm's ``ProteinBertModel`` (ESM-1b) of `tiny`'s shape with random weights, and its alphabet."""
    import esm

    torch.manual_seed(tiny.seed)
    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    args = argparse.Namespace(
        arch="roberta_large",
        layers=tiny.num_layers,
        embed_dim=tiny.embed_dim,
        ffn_embed_dim=4 * tiny.embed_dim,
        attention_heads=tiny.attention_heads,
        max_positions=tiny.max_positions,
        token_dropout=True,
        emb_layer_norm_before=True,
    )
    model = esm.model.esm1.ProteinBertModel(args, alphabet)
    randomize_parameters(model)
    return model.eval(), alphabet


def has_contact_regression(name: str) -> bool:
    """Whether fair-esm publishes contact regression for `name` (its spec declares ``contacts``)."""
    return "contacts" in get_spec(name).verbs


def write_fair_esm1_checkpoint(folder: str | Path, name: str = TINY_NAME, tiny: TinyEsm1 = TinyEsm1()) -> Path:
    """Write ``<folder>/<name>.pt`` (and for ESM-1b ``<name>-contact-regression.pt``) in fair-esm's layout.

    Returns:
        The path of the ``.pt`` file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = random_fair_esm1b(tiny)[0].state_dict()  # lm_head.weight shares embed_tokens.weight's tensor
    body = {
        ("encoder." if key.startswith("lm_head.") else "encoder.sentence_encoder.") + key: value
        for key, value in state.items()
        if not key.startswith("contact_head.")
    }
    args = argparse.Namespace(
        arch="roberta_large",
        encoder_layers=tiny.num_layers,
        encoder_embed_dim=tiny.embed_dim,
        encoder_ffn_embed_dim=4 * tiny.embed_dim,
        encoder_attention_heads=tiny.attention_heads,
        max_positions=tiny.max_positions,
        token_dropout=True,
    )
    path = folder / f"{name}.pt"
    torch.save({"args": args, "model": body}, path)
    if has_contact_regression(name):
        regression = {k: v for k, v in state.items() if k.startswith("contact_head.")}
        torch.save({"model": regression}, folder / f"{name}{REGRESSION_SUFFIX}")
    return path


def write_hf_esm1_dir(folder: str | Path, name: str = TINY_NAME, tiny: TinyEsm1 = TinyEsm1()) -> Path:
    """`write_fair_esm1_checkpoint`'s random weights, as fair-esm loads them, as an ``EsmForMaskedLM`` folder."""
    import esm
    from transformers import EsmConfig, EsmForMaskedLM

    # Converted from what fair-esm loads (mask row zeroed), as transformers' conversion script does.
    with tempfile.TemporaryDirectory() as staging, torch.serialization.safe_globals([argparse.Namespace]):
        fair, _ = esm.pretrained.load_model_and_alphabet_local(str(write_fair_esm1_checkpoint(staging, name, tiny)))
    config = EsmConfig(
        vocab_size=33,
        hidden_size=tiny.embed_dim,
        num_hidden_layers=tiny.num_layers,
        num_attention_heads=tiny.attention_heads,
        intermediate_size=4 * tiny.embed_dim,
        max_position_embeddings=tiny.max_positions + 2,  # + padding index + 1, as fair-esm's table
        position_embedding_type="absolute",
        token_dropout=True,
        mask_token_id=32,
        pad_token_id=1,
        emb_layer_norm_before=True,
        layer_norm_eps=1e-5,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        hidden_act="gelu",
        vocab_list=None,
    )
    hf = EsmForMaskedLM(config).eval()
    mapped = {new: v.clone() for k, v in fair.state_dict().items() if (new := hf_key_for(k)) is not None}
    if not has_contact_regression(name):
        mapped = {k: v for k, v in mapped.items() if not k.startswith("esm.contact_head.")}
    missing, unexpected = hf.load_state_dict(mapped, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids") and not m.startswith("esm.contact_head.")]
    if missing or unexpected:
        raise RuntimeError(f"HF key map incomplete: missing={missing} unexpected={unexpected}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(folder)
    return folder


def member_tiny(tiny: TinyEsm1, member: str) -> TinyEsm1:
    """Each ensemble member gets its own seed, so their mean differs from every member."""
    return replace(tiny, seed=tiny.seed + ESM1V_MEMBERS.index(member) + 1)


def write_ensemble_folder(folder: str | Path, tiny: TinyEsm1 = TinyEsm1(), huggingface: bool = False) -> Path:
    """The ensemble's layout: ``<member>.pt`` per ESM-1v member, or a Hugging Face ``<member>/`` folder each."""
    folder = Path(folder)
    for member in ESM1V_MEMBERS:
        if huggingface:
            write_hf_esm1_dir(folder / member, member, member_tiny(tiny, member))
        else:
            write_fair_esm1_checkpoint(folder, member, member_tiny(tiny, member))
    return folder


def tiny_checkpoint(folder: str | Path, name: str = TINY_NAME) -> Path:
    """A tiny random ESM-1 in fair-esm's published layout, stored as `name` (the ensemble: a folder of five).

    It is not the published shape, so loading it warns (`ArchitectureWarning`).
    """
    if get_spec(name).config.get("members"):
        return write_ensemble_folder(folder)
    if name in ESM1V_MEMBERS:
        return write_fair_esm1_checkpoint(folder, name, member_tiny(TinyEsm1(), name))
    return write_fair_esm1_checkpoint(folder, name)
