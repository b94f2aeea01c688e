"""MegaMolBART's encoder for LoRA fine-tuning (`bionemo_lite.verbs.LoraAdaptable`).

The module takes ``input_ids`` and ``attention_mask`` (``int64 [batch, length]``: bare SMILES
tokens, right-padded, the mask 1 on tokens) and returns the last encoder hidden states
(after the final LayerNorm, ``float [batch, length, dim]``). Only the encoder runs, so LoRA
adapts only the encoder's projections. This is deliberately not `OnnxExportable`: Triton
serves MegaMolBART through its python backend, not an ONNX graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from bionemo_lite.verbs import OnnxEncoder

if TYPE_CHECKING:
    from .model import MegaMolBARTModel
    from .network import MegaMolBARTNetwork

INPUT_NAMES = ["input_ids", "attention_mask"]
EXAMPLE_SMILES = ("CCO", "c1ccccc1C(=O)O")  # two lengths, so the example batch has padding


class MegaMolBARTEncoderModule(nn.Module):
    """``(input_ids, attention_mask) -> last encoder hidden states`` of a `MegaMolBARTNetwork`."""

    def __init__(self, network: MegaMolBARTNetwork):
        super().__init__()
        self.network = network

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.network.encode(input_ids, attention_mask.bool())


def _residue_mask(arrays: dict[str, np.ndarray]) -> np.ndarray:
    # The encoder takes no BOS/EOS: every token is a SMILES token, as embed's mean averages them.
    return arrays["attention_mask"].astype(bool)


def megamolbart_lora_encoder(model: MegaMolBARTModel) -> OnnxEncoder:
    """The LoRA description of a loaded MegaMolBART: its encoder module, tokenizer and residue mask.

    The tokenizer validates and canonicalises SMILES exactly as ``embed`` does (the model's own
    checks), so a bad SMILES is an `InvalidInputError` naming it.
    """
    pad_id = model.tokenizer.pad_id

    def tokenize(smiles: list[str]) -> dict[str, np.ndarray]:
        token_ids = model.smiles_token_ids(smiles)
        width = max((len(t) for t in token_ids), default=1)
        ids = np.full((len(token_ids), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(token_ids), width), dtype=np.int64)
        for row, tokens in enumerate(token_ids):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    device = next(model.network.parameters()).device
    example = tokenize(list(EXAMPLE_SMILES))
    return OnnxEncoder(
        module=MegaMolBARTEncoderModule(model.network).eval(),
        example_inputs=tuple(torch.as_tensor(example[name], device=device) for name in INPUT_NAMES),
        input_names=list(INPUT_NAMES),
        output_names=["last_hidden_state"],
        dynamic_axes={name: {0: "batch", 1: "length"} for name in [*INPUT_NAMES, "last_hidden_state"]},
        tokenize=tokenize,
        residue_mask=_residue_mask,
        bos_index=None,
    )
