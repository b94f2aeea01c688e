"""The ESM-1b network (ESM-1v has the same): ESM-2's layers and heads, with
learned absolute positions and a LayerNorm on the embeddings instead of rotary.

Follows fair-esm's ``esm.model.esm1.ProteinBertModel`` (``roberta_large``):
token embeddings (token dropout on ``<mask>``), plus learned positions indexed
as fairseq does (``padding_idx + 1`` for the first token, ``padding_idx`` for
padding), ``emb_layer_norm_before``, padding zeroed, then pre-LayerNorm layers
without rotary and ``emb_layer_norm_after`` as in ESM-2. Parameter names are
fair-esm's (``embed_positions``, ``emb_layer_norm_before``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bionemo_lite.packing import Packing
from bionemo_lite.zoo.esm2.network import ESM2Network, Esm2Arch, Numerics

from . import MAX_POSITIONS


@dataclass(frozen=True)
class Esm1bArch(Esm2Arch):
    """The shape of an ESM-1b network.

    Attributes:
        max_positions: the longest token sequence (BOS + residues + EOS); the
            position table has ``max_positions + padding_idx + 1`` rows.
        emb_layer_norm_before: whether the embeddings pass a LayerNorm (fair-esm
            reads it from the checkpoint: ESM-1b and ESM-1v have it).
    """

    max_positions: int = MAX_POSITIONS
    rotary: bool = False
    emb_layer_norm_before: bool = True

    def to_config(self) -> dict[str, Any]:
        learned = {"position_embedding": "learned", "emb_layer_norm_before": self.emb_layer_norm_before}
        return {**super().to_config(), **learned}


class ESM1bNetwork(ESM2Network):
    """ESM-1b: `ESM2Network` with learned positions and ``emb_layer_norm_before`` (see the module doc)."""

    arch: Esm1bArch

    def __init__(self, arch: Esm1bArch, numerics: Numerics = "fast"):
        super().__init__(arch, numerics)
        dim = arch.embed_dim
        self.embed_positions = nn.Embedding(
            arch.max_positions + self.padding_idx + 1, dim, padding_idx=self.padding_idx
        )
        self.emb_layer_norm_before = (
            nn.LayerNorm(dim, eps=arch.layer_norm_eps) if arch.emb_layer_norm_before else None
        )

    def positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """fairseq's position ids: ``padding_idx + 1, + 2, ...`` along each record, ``padding_idx`` on padding."""
        keep = tokens.ne(self.padding_idx).long()
        return torch.cumsum(keep, dim=1) * keep + self.padding_idx

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings (token dropout as ESM-2) + positions, LayerNorm, padding zeroed (layer 0)."""
        # ESM-2's embed() zeroes padding rows first: multiplying the others by 1.0 changes no bit.
        x = super().embed(tokens) + self.embed_positions(self.positions(tokens))
        if self.emb_layer_norm_before is not None:
            x = self.emb_layer_norm_before(x)
        return x * (1 - tokens.eq(self.padding_idx).unsqueeze(-1).type_as(x))

    def embed_packed(self, tokens: torch.Tensor, packing: Packing) -> torch.Tensor:
        """`embed` for packed tokens ``[N]``: learned positions restart at every sequence."""
        x = super().embed_packed(tokens, packing) + self.embed_positions(packing.positions + self.padding_idx + 1)
        if self.emb_layer_norm_before is not None:
            x = self.emb_layer_norm_before(x)
        return x
