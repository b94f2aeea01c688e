"""ESMFold's input layout: chains joined by ``:``, a poly-G linker and a residue-index gap.

Upstream (fair-esm ``esm/esmfold/v1/misc.py::encode_sequence``) folds a complex
as one chain: the chains are joined by a 25-residue glycine linker, the
residue index jumps by 512 at every chain (so the relative-position features
see the chains as far apart), and the linker's atoms are masked out of the
output. transformers' ``EsmForProteinFolding.infer`` does none of this (a
``:`` would become an unknown residue), so the layout is rebuilt here. No
torch: this module is plain numpy so the layout can be checked before any
model work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bionemo_lite.chains import CHAIN_SEPARATOR, clean_chains
from bionemo_lite.errors import InvalidInputError
from bionemo_lite.structures import RESTYPES
CHAIN_LINKER = "G" * 25
RESIDUE_INDEX_OFFSET = 512
UNKNOWN_INDEX = len(RESTYPES)  # "X" in AlphaFold's restype_order_with_x
_AF_INDEX = {aa: i for i, aa in enumerate(RESTYPES)}


@dataclass(frozen=True)
class FoldInput:
    """One structure request laid out as the model sees it.

    Attributes:
        chains: the cleaned chain sequences (upper case, no whitespace).
        chain_ids: ``A``, ``B``, ... one per chain.
        aatype: ``[T]`` AlphaFold-order residue ids of the joined sequence
            (linkers included; B, U, Z, O and X map to unknown, as upstream).
        residue_index: ``[T]`` position ids with the 512 gap per chain.
        is_linker: ``[T]`` True on linker positions (removed from every output).
    """

    chains: tuple[str, ...]
    chain_ids: tuple[str, ...]
    aatype: np.ndarray
    residue_index: np.ndarray
    is_linker: np.ndarray

    @property
    def num_residues(self) -> int:
        """Residues of the chains themselves (linkers not counted)."""
        return sum(len(c) for c in self.chains)

    @property
    def sequence(self) -> str:
        """The cleaned input, chains joined by ``:``."""
        return CHAIN_SEPARATOR.join(self.chains)

    @property
    def residues(self) -> str:
        """The chain residues concatenated (output order, no linker)."""
        return "".join(self.chains)

    def per_residue_chain_ids(self) -> list[str]:
        return [cid for cid, chain in zip(self.chain_ids, self.chains) for _ in chain]

    def per_residue_numbers(self) -> list[int]:
        """Residue numbers restart at 1 in every chain."""
        return [i for chain in self.chains for i in range(1, len(chain) + 1)]


def encode(
    sequence: str,
    max_length: int,
    record: str = "sequence",
    linker: str = CHAIN_LINKER,
    residue_index_offset: int = RESIDUE_INDEX_OFFSET,
) -> FoldInput:
    """Validate and lay out one (possibly multi-chain) sequence.

    Args:
        sequence: residues, chains joined by ``:``.
        max_length: the most residues (all chains, linkers not counted) allowed.
        record: the record's id, for error messages.

    Raises:
        InvalidInputError: bad residue, empty chain, or too long; raised before
            any model work.
    """
    ids, chains = zip(*clean_chains(sequence, record))
    total = sum(len(c) for c in chains)
    if total > max_length:
        raise InvalidInputError(
            f"{total} residues" + (f" in {len(chains)} chains" if len(chains) > 1 else "")
            + f", more than the model's maximum of {max_length} for one structure",
            record=record,
        )
    aatype: list[int] = []
    residx: list[int] = []
    linker_mask: list[bool] = []
    pos = 0
    for i, chain in enumerate(chains):
        if i > 0:
            # Upstream counts the linker into the previous chain's index block.
            for aa in linker:
                aatype.append(_AF_INDEX[aa])
                residx.append(pos + (i - 1) * residue_index_offset)
                linker_mask.append(True)
                pos += 1
        for aa in chain:
            aatype.append(_AF_INDEX.get(aa, UNKNOWN_INDEX))
            residx.append(pos + i * residue_index_offset)
            linker_mask.append(False)
            pos += 1
    return FoldInput(
        chains=tuple(chains),
        chain_ids=tuple(ids),
        aatype=np.asarray(aatype, dtype=np.int64),
        residue_index=np.asarray(residx, dtype=np.int64),
        is_linker=np.asarray(linker_mask, dtype=bool),
    )
