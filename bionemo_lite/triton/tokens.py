"""Tokenisation without torch, for ONNX encoders served by Triton (pooling: `bionemo_lite.pooling`).

An ONNX graph takes token ids, not text. Protein language models tokenise one
character per residue, so their tokenizer is data: a vocabulary, the ids put
before and after each sequence, and the padding id. An encoder declares it in
``OnnxEncoder.extra["tokenizer"]`` (a JSON-able dict, see `CharTokenizer`); the
exporter writes it next to the graph as ``tokenizer.json`` and checks it
against the plugin's own tokenizer, so the served model needs neither torch nor
the plugin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BionemoLiteError, InvalidInputError


@dataclass(frozen=True)
class CharTokenizer:
    """One token per character, with fixed ids before and after each sequence.

    Attributes:
        vocab: character -> token id.
        prepend: ids put before every sequence (e.g. BOS).
        append: ids put after every sequence (e.g. EOS).
        pad: padding id (right padding).
        unk: id of characters missing from `vocab`; None refuses them.
        input_name: name of the graph's token input.
        attention_mask_name: name of a graph input taking the 0/1 mask, if any.
    """

    vocab: Mapping[str, int]
    prepend: tuple[int, ...] = ()
    append: tuple[int, ...] = ()
    pad: int = 0
    unk: int | None = None
    input_name: str = "tokens"
    attention_mask_name: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CharTokenizer:
        """Build from the ``tokenizer.json`` layout (``kind: "chars"``)."""
        if data.get("kind", "chars") != "chars":
            raise BionemoLiteError(f"unsupported tokenizer kind {data.get('kind')!r} (only 'chars')")
        return cls(
            vocab={str(k): int(v) for k, v in data["vocab"].items()},
            prepend=tuple(int(i) for i in data.get("prepend", ())),
            append=tuple(int(i) for i in data.get("append", ())),
            pad=int(data["pad"]),
            unk=None if data.get("unk") is None else int(data["unk"]),
            input_name=str(data.get("input_name", "tokens")),
            attention_mask_name=data.get("attention_mask_name"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "chars",
            "vocab": dict(self.vocab),
            "prepend": list(self.prepend),
            "append": list(self.append),
            "pad": self.pad,
            "unk": self.unk,
            "input_name": self.input_name,
            "attention_mask_name": self.attention_mask_name,
        }

    def ids(self, sequence: str) -> list[int]:
        out = list(self.prepend)
        for pos, ch in enumerate(sequence, start=1):
            tok = self.vocab.get(ch, self.unk)
            if tok is None:
                raise InvalidInputError(f"character {ch!r} is not in the model's vocabulary", position=pos)
            out.append(tok)
        return out + list(self.append)

    def __call__(self, sequences: Sequence[str]) -> dict[str, np.ndarray]:
        """The graph inputs for a batch: ``{input_name: int64 [B, T]}`` (+ the mask, if the graph takes one)."""
        rows = [self.ids(s) for s in sequences]
        width = max((len(r) for r in rows), default=0)
        tokens = np.full((len(rows), width), self.pad, dtype=np.int64)
        for i, row in enumerate(rows):
            tokens[i, : len(row)] = row
        out = {self.input_name: tokens}
        if self.attention_mask_name:
            out[self.attention_mask_name] = (self.lengths_mask(sequences, width)).astype(np.int64)
        return out

    def lengths_mask(self, sequences: Sequence[str], width: int) -> np.ndarray:
        """``[B, T]`` True on every real token (specials included), False on padding."""
        mask = np.zeros((len(sequences), width), dtype=bool)
        for i, s in enumerate(sequences):
            mask[i, : len(self.prepend) + len(s) + len(self.append)] = True
        return mask

    def residue_mask(self, sequences: Sequence[str], width: int) -> np.ndarray:
        """``[B, T]`` True on residue tokens only (no specials, no padding)."""
        mask = np.zeros((len(sequences), width), dtype=bool)
        start = len(self.prepend)
        for i, s in enumerate(sequences):
            mask[i, start : start + len(s)] = True
        return mask
