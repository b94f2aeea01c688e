"""The ProtT5 tokenizer: one token per residue, ``</s>`` at the end.

Upstream feeds ``" ".join(sequence)`` with U, Z, O and B replaced by X to
Hugging Face's ``T5Tokenizer``; every residue is then its own word-initial
piece (``▁A``) and ``</s>`` (id 1) is appended. The ids are fixed by the
published vocabulary, so the table below reproduces them exactly without
sentencepiece. Where a checkpoint ships ``spiece.model`` the table is read
from it instead and checked against the built-in one on all 25 letters: a
checkpoint with a different vocabulary would otherwise embed silently wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bionemo_lite.errors import CheckpointError

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
# Published vocabulary order (ids 3..27); 28..127 are <extra_id_99>..<extra_id_0>.
RESIDUE_ORDER = "ALGVSREDTIPKFQNYMHWCXBOUZ"
VOCAB: Mapping[str, int] = {"<pad>": PAD_ID, "</s>": EOS_ID, "<unk>": UNK_ID} | {
    aa: i for i, aa in enumerate(RESIDUE_ORDER, start=3)
}
# Rare/ambiguous residues the model never saw as such: upstream maps them to X.
RARE_TO_X = {"U": "X", "Z": "X", "O": "X", "B": "X"}
ALL_RESIDUES = "ACDEFGHIKLMNPQRSTVWY" + "XBUZO"
MIN_VOCAB_SIZE = max(VOCAB.values()) + 1


def builtin_residue_ids() -> dict[str, int]:
    """Id of each of the 25 accepted residue letters, after mapping U Z O B to X."""
    return {aa: VOCAB[RARE_TO_X.get(aa, aa)] for aa in ALL_RESIDUES}


def spiece_residue_ids(path: Path) -> dict[str, int]:
    """Read the residue ids from a sentencepiece model, the way upstream tokenizes.

    Raises:
        CheckpointError: the file is unreadable, a letter does not become exactly
            one piece, or ``</s>``/``<pad>`` are not ids 1/0.
    """
    import sentencepiece as spm

    try:
        sp = spm.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable sentencepiece model: {exc}") from exc
    problems: list[str] = []
    for piece, want in (("<pad>", PAD_ID), ("</s>", EOS_ID)):
        got = sp.piece_to_id(piece)
        if got != want:
            problems.append(f"{piece!r} has id {got}, expected {want}")
    ids: dict[str, int] = {}
    for aa in ALL_RESIDUES:
        encoded = sp.encode(RARE_TO_X.get(aa, aa))
        if len(encoded) != 1:
            problems.append(f"{aa!r} becomes {len(encoded)} pieces {encoded}, expected one")
            continue
        ids[aa] = int(encoded[0])
    # The space-separated form upstream feeds must split into exactly these pieces.
    joined = sp.encode(" ".join(RARE_TO_X.get(aa, aa) for aa in ALL_RESIDUES))
    if not problems and joined != [ids[aa] for aa in ALL_RESIDUES]:
        problems.append(f"the space-separated alphabet encodes as {joined}, not one piece per residue")
    if problems:
        raise CheckpointError(f"{path}: unusable ProtT5 vocabulary: " + "; ".join(problems))
    return ids


def check_spiece(path: Path) -> dict[str, int]:
    """`spiece_residue_ids`, required to agree with the built-in vocabulary.

    Raises:
        CheckpointError: listing every letter whose id differs.
    """
    ids = spiece_residue_ids(path)
    builtin = builtin_residue_ids()
    wrong = [f"{aa!r}: spiece.model {ids[aa]}, built-in {builtin[aa]}" for aa in ALL_RESIDUES if ids[aa] != builtin[aa]]
    if wrong:
        raise CheckpointError(
            f"{path} does not match the ProtT5 vocabulary (ids after U/Z/O/B -> X): " + "; ".join(wrong)
        )
    return ids


class ProtT5Tokenizer:
    """Residue letters to ProtT5 token ids.

    Args:
        residue_ids: id per accepted letter (built-in table by default, or the
            one read from ``spiece.model``).
        source: where the table came from, for messages and `repr`.
    """

    def __init__(self, residue_ids: Mapping[str, int] | None = None, source: str = "built-in"):
        self.residue_ids = dict(residue_ids or builtin_residue_ids())
        self.source = source
        self._lookup = np.full(128, -1, dtype=np.int64)
        for aa, idx in self.residue_ids.items():
            self._lookup[ord(aa)] = idx

    @classmethod
    def from_checkpoint_dir(cls, folder: Path) -> ProtT5Tokenizer:
        """Use ``spiece.model`` when the folder has one (after checking it), else the built-in table."""
        spiece = folder / "spiece.model"
        if spiece.is_file():
            return cls(check_spiece(spiece), source=str(spiece))
        return cls()

    def encode(self, sequence: str) -> np.ndarray:
        """Ids of one clean, upper-case sequence, ``</s>`` appended (length ``L + 1``)."""
        codes = np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)
        ids = self._lookup[codes]
        if (ids < 0).any():
            bad = sequence[int(np.argmax(ids < 0))]
            raise ValueError(f"residue {bad!r} is not in the ProtT5 alphabet")  # callers pass cleaned records
        return np.concatenate([ids, np.array([EOS_ID], dtype=np.int64)])

    def batch(self, sequences: Sequence[str]) -> dict[str, np.ndarray]:
        """Right-padded ``input_ids`` and ``attention_mask`` (int64 ``[batch, longest + 1]``)."""
        encoded = [self.encode(s) for s in sequences]
        width = max(len(e) for e in encoded)
        input_ids = np.full((len(encoded), width), PAD_ID, dtype=np.int64)
        attention_mask = np.zeros((len(encoded), width), dtype=np.int64)
        for row, ids in enumerate(encoded):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    @staticmethod
    def residue_mask(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """True on residue tokens: not padding and not ``</s>`` (no residue maps to id 1)."""
        return (np.asarray(arrays["attention_mask"]) != 0) & (np.asarray(arrays["input_ids"]) != EOS_ID)

    def __repr__(self) -> str:
        return f"ProtT5Tokenizer(source={self.source!r})"
