"""Reading ESM-1b / ESM-1v checkpoints in their two published formats.

- fair-esm ``.pt``: ``{"args": Namespace(arch="roberta_large", encoder_layers=...),
  "model": state_dict}`` with keys under ``encoder.sentence_encoder.`` /
  ``encoder.``, and for ESM-1b a sibling ``<stem>-contact-regression.pt``.
  As fair-esm's loader does, the ``<mask>`` row of the token embedding (tied
  to the LM head) is zeroed.
- Hugging Face ``EsmForMaskedLM`` folders with ``position_embedding_type
  "absolute"`` and ``emb_layer_norm_before``.

The tensors are read with ESM-2's readers (`bionemo_lite.zoo.esm2.checkpoint`,
same key layout plus ``embed_positions`` and ``emb_layer_norm_before``); the
architecture is read from the checkpoint's own config, else the tensor shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bionemo_lite.errors import CheckpointError
from bionemo_lite.zoo.esm2.alphabet import ALPHABET
from bionemo_lite.zoo.esm2.checkpoint import (
    HF_WEIGHT_FILES,
    REGRESSION_SUFFIX,
    Esm2Checkpoint,
    read_fair_esm_state,
    read_hf_config,
    read_hf_state,
)

from .network import Esm1bArch

FAIR_ARCH = "roberta_large"  # fair-esm's args.arch for ESM-1b and ESM-1v
POSITIONS_KEY = "embed_positions.weight"


def read_checkpoint(path: str | Path, name: str | None = None) -> Esm2Checkpoint:
    """Read a fair-esm ``.pt``, a Hugging Face folder, or a folder holding the ESM-1 ``.pt``.

    Args:
        path: the file or folder.
        name: the variant being loaded; picks ``<name>.pt`` in a folder holding several.

    Raises:
        CheckpointError: the path is not an ESM-1b/1v checkpoint we can read.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "config.json").is_file():
            return read_huggingface(path)
        candidates = sorted(p for p in path.glob("*.pt") if not p.name.endswith(REGRESSION_SUFFIX))
        if len(candidates) > 1 and name is not None:
            candidates = [p for p in candidates if p.stem == name]
        if len(candidates) == 1:
            return read_fair_esm(candidates[0])
        raise CheckpointError(
            f"{path}: expected a Hugging Face folder (config.json + weights) or one ESM-1 .pt file"
            + (f" named {name}.pt" if name else "")
            + f", found {len(candidates)} candidate .pt files"
        )
    if path.name == "config.json" or path.name in HF_WEIGHT_FILES:
        return read_huggingface(path.parent)
    if path.suffix in (".pt", ".pth"):
        return read_fair_esm(path)
    raise CheckpointError(f"{path}: not an ESM-1 checkpoint (expected a fair-esm .pt or a Hugging Face folder)")


def _arg(args: Any, name: str) -> Any:
    return args.get(name) if isinstance(args, Mapping) else getattr(args, name, None)


def read_fair_esm(path: Path) -> Esm2Checkpoint:
    """Read an official-layout ESM-1b/1v ``.pt`` (and ESM-1b's ``-contact-regression.pt`` if present)."""
    data, state = read_fair_esm_state(path)
    args = data.get("args")
    arch_name = _arg(args, "arch")
    if arch_name != FAIR_ARCH:
        hint = " (an ESM-2 file: load it as an esm2_* variant)" if "cfg" in data else ""
        raise CheckpointError(
            f"{path}: fair-esm architecture {arch_name!r}, not {FAIR_ARCH!r} (ESM-1b/ESM-1v){hint}"
        )
    embed = state.get("embed_tokens.weight")
    if embed is not None and embed.dim() == 2 and embed.shape[0] > ALPHABET.mask_idx:
        # fair-esm zeroes it at load ("for token drop"); the LM head shares the tensor in official files.
        embed[ALPHABET.mask_idx].zero_()
    arch = _infer_arch(
        state,
        path,
        num_layers=_arg(args, "encoder_layers"),
        embed_dim=_arg(args, "encoder_embed_dim"),
        ffn_dim=_arg(args, "encoder_ffn_embed_dim"),
        attention_heads=_arg(args, "encoder_attention_heads"),
        token_dropout=bool(_arg(args, "token_dropout") or False),  # fair-esm: getattr(args, "token_dropout", False)
        layer_norm_eps=None,
    )
    return Esm2Checkpoint(state, arch, "fair-esm", path)


def read_huggingface(folder: Path) -> Esm2Checkpoint:
    """Read a Hugging Face ``EsmForMaskedLM`` folder of an ESM-1b/1v model."""
    config = read_hf_config(folder)
    problems = []
    if config.get("position_embedding_type", "absolute") != "absolute":
        problems.append(f"position_embedding_type is {config.get('position_embedding_type')!r}, not 'absolute'")
    if config.get("hidden_act", "gelu") != "gelu":
        problems.append(f"hidden_act is {config.get('hidden_act')!r}, not 'gelu'")
    ids = (config.get("mask_token_id", ALPHABET.mask_idx), config.get("pad_token_id", ALPHABET.pad_idx))
    if ids != (ALPHABET.mask_idx, ALPHABET.pad_idx):
        problems.append(f"mask/pad token ids differ from the ESM alphabet ({ALPHABET.mask_idx}/{ALPHABET.pad_idx})")
    if problems:
        raise CheckpointError(f"{folder}: not an ESM-1b/1v checkpoint: " + "; ".join(problems))
    state, _ = read_hf_state(folder)
    arch = _infer_arch(
        state,
        folder,
        num_layers=config.get("num_hidden_layers"),
        embed_dim=config.get("hidden_size"),
        ffn_dim=config.get("intermediate_size"),
        attention_heads=config.get("num_attention_heads"),
        token_dropout=bool(config.get("token_dropout", False)),  # EsmConfig's default
        layer_norm_eps=config.get("layer_norm_eps"),
    )
    if arch.emb_layer_norm_before != bool(config.get("emb_layer_norm_before", False)):
        raise CheckpointError(
            f"{folder}: config.json's emb_layer_norm_before disagrees with the weights "
            f"(esm.embeddings.layer_norm.* {'present' if arch.emb_layer_norm_before else 'absent'})"
        )
    return Esm2Checkpoint(state, arch, "huggingface", folder)


def _infer_arch(
    state: Mapping[str, torch.Tensor],
    path: Path,
    *,
    num_layers: int | None,
    embed_dim: int | None,
    ffn_dim: int | None,
    attention_heads: int | None,
    token_dropout: bool,
    layer_norm_eps: float | None,
) -> Esm1bArch:
    """The architecture from the checkpoint's config, checked against (and completed from) the tensors."""
    embed = state.get("embed_tokens.weight")
    if embed is None or embed.dim() != 2 or embed.shape[0] != len(ALPHABET):
        raise CheckpointError(
            f"{path}: no token embedding of {len(ALPHABET)} tokens (embed_tokens.weight): not an ESM-1 checkpoint"
        )
    positions = state.get(POSITIONS_KEY)
    if positions is None or positions.dim() != 2:
        raise CheckpointError(f"{path}: no learned position embedding ({POSITIONS_KEY}): not an ESM-1b/1v checkpoint")
    layers_in_file = len({k.split(".")[1] for k in state if k.startswith("layers.")})
    if attention_heads is None:
        raise CheckpointError(f"{path}: the number of attention heads is not in the checkpoint's config")
    fc1 = state.get("layers.0.fc1.weight")
    try:
        return Esm1bArch(
            num_layers=int(num_layers) if num_layers is not None else layers_in_file,
            embed_dim=int(embed_dim) if embed_dim is not None else int(embed.shape[1]),
            attention_heads=int(attention_heads),
            ffn_dim=int(ffn_dim) if ffn_dim is not None else (int(fc1.shape[0]) if fc1 is not None else None),
            token_dropout=token_dropout,
            layer_norm_eps=float(layer_norm_eps) if layer_norm_eps is not None else 1e-5,
            max_positions=int(positions.shape[0]) - ALPHABET.pad_idx - 1,
            emb_layer_norm_before=any(k.startswith("emb_layer_norm_before.") for k in state),
        )
    except ValueError as exc:
        raise CheckpointError(f"{path}: inconsistent architecture: {exc}") from exc
