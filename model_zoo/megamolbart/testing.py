"""Tiny random-weight MegaMolBART checkpoints as NeMo ``.nemo`` archives, for tests and demos.

No trained MegaMolBART weights can be downloaded, so a tiny model of
MegaMolBART's architecture is initialised as Megatron does (`MegaMolBARTModel.from_config`)
and written as BioNeMo publishes the model: a ``.nemo`` archive
(``model_config.yaml``, ``model_weights.ckpt``, the tokenizer files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "num_layers": 2,
    "decoder_num_layers": 2,
    "ffn_hidden_size": 256,
    "num_attention_heads": 4,
    "max_position_embeddings": 64,
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
    "embedding_dropout": 0.0,
}
"""The tiny architecture (also the one the tests train as a SMILES autoencoder)."""


def tiny_checkpoint(folder: str | Path, seed: int = 0) -> Path:
    """Write ``<folder>/megamolbart.nemo``: `TINY_CONFIG` with random weights drawn from `seed`."""
    from .model import MegaMolBARTModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return MegaMolBARTModel.from_config(TINY_CONFIG, seed=seed).save_nemo(folder / "megamolbart.nemo")
