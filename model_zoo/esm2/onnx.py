"""ESM-2's encoder for ONNX export (`bionemo_lite.verbs.OnnxExportable`).

The graph takes ``tokens`` (``int64 [batch, length]``: BOS + residues + EOS,
right-padded with the pad id) and returns the hidden states of the requested
layers (``float32 [batch, length, dim]``; by default only the last layer, after
its final LayerNorm, as ``last_hidden_state``). Padding is always masked inside
the graph: with no padding the mask is all false and changes nothing, so one
graph serves every batch. The tokenizer is described as data
(``extra["tokenizer"]``) so a server can tokenise without torch or this plugin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from bionemo_lite.encoding import resolve_layers
from bionemo_lite.verbs import OnnxEncoder

from .alphabet import ALPHABET

if TYPE_CHECKING:
    from .model import ESM2Model
    from .network import ESM2Network

EXAMPLE_SEQUENCES = ("MKTAYIAKQRQISFVKSHFSRQ", "GSHMLE")  # two lengths, so the trace sees padding


class Esm2EncoderGraph(nn.Module):
    """``tokens -> hidden states of `layers``` as a traceable module."""

    def __init__(self, network: ESM2Network, layers: Sequence[int]):
        super().__init__()
        self.network = network
        self.layers = tuple(int(i) for i in layers)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
        enc = self.network.encode(tokens, self.layers, need_logits=False, mask_padding=True)
        return tuple(enc.hidden[i] for i in self.layers)


def tokenizer_spec() -> dict:
    """ESM-2's tokenisation as data: one token per residue letter, BOS before, EOS after."""
    letters = {tok: i for i, tok in enumerate(ALPHABET.tokens) if len(tok) == 1}
    return {
        "kind": "chars",
        "vocab": letters,
        "prepend": [ALPHABET.cls_idx],
        "append": [ALPHABET.eos_idx],
        "pad": ALPHABET.pad_idx,
        "unk": None,
        "input_name": "tokens",
    }


def _tokenize(sequences: list[str]) -> dict[str, np.ndarray]:
    return {"tokens": ALPHABET.batch_tokens(list(sequences)).numpy()}


def _residue_mask(arrays: dict[str, np.ndarray]) -> np.ndarray:
    tokens = arrays["tokens"]
    return (tokens != ALPHABET.cls_idx) & (tokens != ALPHABET.eos_idx) & (tokens != ALPHABET.pad_idx)


def esm2_onnx_encoder(model: ESM2Model, layers: int | Sequence[int] = -1) -> OnnxEncoder:
    """The ONNX export description of a loaded ESM-2 model.

    Args:
        model: the loaded model (export from CPU float32 for an fp32 graph).
        layers: layer(s) the graph returns (0 = embeddings, -1 = last).
    """
    num_layers = model.num_layers
    absolute = resolve_layers(layers, num_layers)
    names = ["last_hidden_state"] if absolute == (num_layers,) else [f"hidden_states_{i}" for i in absolute]
    device = next(model.network.parameters()).device
    example = ALPHABET.batch_tokens(list(EXAMPLE_SEQUENCES)).to(device)
    axes = {"tokens": {0: "batch", 1: "length"}, **{n: {0: "batch", 1: "length"} for n in names}}
    return OnnxEncoder(
        module=Esm2EncoderGraph(model.network, absolute).eval(),
        example_inputs=(example,),
        input_names=["tokens"],
        output_names=names,
        dynamic_axes=axes,
        tokenize=_tokenize,
        residue_mask=_residue_mask,
        bos_index=0,
        extra={"tokenizer": tokenizer_spec(), "num_layers": num_layers, "layers": list(absolute)},
    )
