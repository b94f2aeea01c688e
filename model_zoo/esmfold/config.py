"""ESMFold architecture facts, read from a Hugging Face ``config.json`` (plain dicts, no torch).

`PUBLISHED` is ``facebook/esmfold_v1``'s shape (ESM-2 3B stem, 48 folding
blocks, 8-block structure module); `shape_of` pulls the same keys out of any
checkpoint's config so a custom-size or fine-tuned checkpoint can be compared
with it (and loaded with a warning).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bionemo_lite.errors import CheckpointError

PUBLISHED: dict[str, Any] = {
    "esm_layers": 36,
    "esm_dim": 2560,
    "esm_heads": 40,
    "trunk_blocks": 48,
    "sequence_state_dim": 1024,
    "pairwise_state_dim": 128,
    "sequence_head_width": 32,
    "pairwise_head_width": 32,
    "position_bins": 32,
    "structure_module_dim": 384,
    "structure_module_blocks": 8,
    "ipa_heads": 12,
    "lddt_head_hid_dim": 128,
    "max_recycles": 4,
}
"""Architecture of ``esmfold_v1`` (fair-esm ``esmfold_3B_v1`` as ported to transformers)."""

ESM2_VOCAB: tuple[str, ...] = (
    "<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N",
    "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>",
)
"""ESM-2's token list (fair-esm ``Alphabet.from_architecture("ESM-1b").all_toks``)."""


def read_config(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of a Hugging Face directory, checked to be an ESMFold model.

    Raises:
        CheckpointError: no config.json, unreadable JSON, or not a folding model
            (an ESM-2 ``EsmForMaskedLM`` directory, say).
    """
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(
            f"{folder}: no config.json; esmfold_v1 loads a Hugging Face directory (facebook/esmfold_v1 layout: "
            "config.json + model.safetensors or pytorch_model.bin)"
        )
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not readable JSON: {exc}") from exc
    if not config.get("is_folding_model") or not isinstance(config.get("esmfold_config"), Mapping):
        arch = ", ".join(config.get("architectures") or []) or config.get("model_type", "unknown")
        raise CheckpointError(
            f"{folder}: config.json describes {arch}, not an ESMFold model (is_folding_model is not true); "
            "ESMFold needs an EsmForProteinFolding checkpoint such as facebook/esmfold_v1"
        )
    return config


def shape_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """The `PUBLISHED` keys as found in a config.json dict (transformers' defaults where absent)."""
    fold = config.get("esmfold_config") or {}
    trunk = fold.get("trunk") or {}
    sm = trunk.get("structure_module") or {}
    return {
        "esm_layers": config.get("num_hidden_layers", 12),
        "esm_dim": config.get("hidden_size", 768),
        "esm_heads": config.get("num_attention_heads", 12),
        "trunk_blocks": trunk.get("num_blocks", 48),
        "sequence_state_dim": trunk.get("sequence_state_dim", 1024),
        "pairwise_state_dim": trunk.get("pairwise_state_dim", 128),
        "sequence_head_width": trunk.get("sequence_head_width", 32),
        "pairwise_head_width": trunk.get("pairwise_head_width", 32),
        "position_bins": trunk.get("position_bins", 32),
        "structure_module_dim": sm.get("sequence_dim", 384),
        "structure_module_blocks": sm.get("num_blocks", 8),
        "ipa_heads": sm.get("num_heads_ipa", 12),
        "lddt_head_hid_dim": fold.get("lddt_head_hid_dim", 128),
        "max_recycles": trunk.get("max_recycles", 4),
    }


def differences(shape: Mapping[str, Any], reference: Mapping[str, Any] = PUBLISHED) -> dict[str, tuple[Any, Any]]:
    """``{key: (found, published)}`` for every key where `shape` differs from `reference`."""
    return {k: (shape.get(k), v) for k, v in reference.items() if shape.get(k) != v}


def hf_config_dict(
    shape: Mapping[str, Any] = PUBLISHED, structure_module: Mapping[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """A config.json dict for an ESMFold of the given shape (the converter writes this).

    Keys not in `shape` take the published model's values; `structure_module`
    adds transformers ``StructureModuleConfig`` fields (``ipa_dim``,
    ``pairwise_dim``, ...); `overrides` replace top-level keys.
    """
    s = {**PUBLISHED, **shape}
    config: dict[str, Any] = {
        "architectures": ["EsmForProteinFolding"],
        "model_type": "esm",
        "is_folding_model": True,
        "vocab_size": 33,
        "mask_token_id": 32,
        "pad_token_id": 1,
        "hidden_size": s["esm_dim"],
        "num_hidden_layers": s["esm_layers"],
        "num_attention_heads": s["esm_heads"],
        "intermediate_size": 4 * s["esm_dim"],
        "max_position_embeddings": 1026,
        "position_embedding_type": "rotary",
        "token_dropout": True,
        "emb_layer_norm_before": False,
        "layer_norm_eps": 1e-5,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "vocab_list": list(ESM2_VOCAB),
        "esmfold_config": {
            "esm_type": "esm2_3B",
            "fp16_esm": True,
            "use_esm_attn_map": False,
            "embed_aa": True,
            "bypass_lm": False,
            "lddt_head_hid_dim": s["lddt_head_hid_dim"],
            "trunk": {
                "num_blocks": s["trunk_blocks"],
                "sequence_state_dim": s["sequence_state_dim"],
                "pairwise_state_dim": s["pairwise_state_dim"],
                "sequence_head_width": s["sequence_head_width"],
                "pairwise_head_width": s["pairwise_head_width"],
                "position_bins": s["position_bins"],
                "dropout": 0.0,
                "layer_drop": 0.0,
                "max_recycles": s["max_recycles"],
                "chunk_size": None,
                "structure_module": {
                    "sequence_dim": s["structure_module_dim"],
                    "pairwise_dim": s["pairwise_state_dim"],
                    "num_heads_ipa": s["ipa_heads"],
                    "num_blocks": s["structure_module_blocks"],
                },
            },
        },
    }
    config["esmfold_config"]["trunk"]["structure_module"].update(structure_module or {})
    config.update(overrides)
    return config
