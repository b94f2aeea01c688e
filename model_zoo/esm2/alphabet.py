"""The ESM-2 vocabulary (fair-esm's "ESM-1b" alphabet) and tokenisation.

Token ids are fixed by the published checkpoints: 0 ``<cls>`` (BOS), 1 ``<pad>``,
2 ``<eos>``, 3 ``<unk>``, 4-28 residues, 29 ``.``, 30 ``-``, 31 ``<null_1>``,
32 ``<mask>``. A sequence is encoded as BOS + one token per residue + EOS.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bionemo_lite.errors import InvalidInputError

if TYPE_CHECKING:
    import torch

TOKENS: tuple[str, ...] = (
    "<cls>", "<pad>", "<eos>", "<unk>",
    "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N", "F", "Y", "M", "H", "W", "C",
    "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>",
)  # fmt: skip
STANDARD_AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
MASK = "<mask>"
# A special token written out in a sequence (``<mask>``), else a single character.
_TOKEN_PATTERN = re.compile(r"<[a-z_0-9]+>|.", re.IGNORECASE)


@dataclass(frozen=True)
class Alphabet:
    """Maps between ESM-2 tokens and ids.

    Attributes:
        tokens: the vocabulary, index = token id.
        cls_idx, pad_idx, eos_idx, unk_idx, mask_idx: ids of the special tokens.
    """

    tokens: tuple[str, ...] = TOKENS
    index: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {tok: i for i, tok in enumerate(self.tokens)})

    @property
    def cls_idx(self) -> int:
        return self.index["<cls>"]

    @property
    def pad_idx(self) -> int:
        return self.index["<pad>"]

    @property
    def eos_idx(self) -> int:
        return self.index["<eos>"]

    @property
    def unk_idx(self) -> int:
        return self.index["<unk>"]

    @property
    def mask_idx(self) -> int:
        return self.index[MASK]

    def __len__(self) -> int:
        return len(self.tokens)

    def get_idx(self, token: str) -> int:
        """Id of one token (``"A"``, ``"<mask>"``); `InvalidInputError` if unknown."""
        try:
            return self.index[token]
        except KeyError:
            raise InvalidInputError(f"{token!r} is not an ESM-2 token") from None

    def residue_ids(self, letters: str = STANDARD_AMINO_ACIDS) -> list[int]:
        """Ids of the given residue letters (default: the 20 standard amino acids)."""
        return [self.index[c] for c in letters]

    def encode(self, sequence: str, record: str | int | None = None) -> list[int]:
        """Ids of a sequence *without* BOS/EOS; special tokens may be written as ``<mask>``.

        Raises:
            InvalidInputError: a character that is not in the vocabulary (with its position).
        """
        ids: list[int] = []
        for pos, match in enumerate(_TOKEN_PATTERN.finditer(sequence), start=1):
            tok = match.group(0)
            tok = tok.lower() if tok.startswith("<") else tok.upper()
            if tok not in self.index:
                raise InvalidInputError(f"{tok!r} is not an ESM-2 token", record=record, position=pos)
            ids.append(self.index[tok])
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids (special tokens written in full, e.g. ``<mask>``)."""
        return "".join(self.tokens[int(i)] for i in ids)

    def batch_tokens(self, sequences: Sequence[str]) -> torch.Tensor:
        """``[B, max_len + 2]`` int64 tensor: BOS + residues + EOS, right-padded with `pad_idx`."""
        import torch

        encoded = [self.encode(s, record=i) for i, s in enumerate(sequences)]
        width = max((len(e) for e in encoded), default=0) + 2
        out = torch.full((len(encoded), width), self.pad_idx, dtype=torch.long)
        for row, ids in enumerate(encoded):
            out[row, 0] = self.cls_idx
            out[row, 1 : len(ids) + 1] = torch.tensor(ids, dtype=torch.long)
            out[row, len(ids) + 1] = self.eos_idx
        return out


ALPHABET = Alphabet()
"""The one ESM-2 alphabet (every published ESM-2 checkpoint uses it)."""
