"""Chains of a complex: one splitter, one chain-id scheme, for every folding model and door.

A complex is given as one sequence with its chains joined by ``:``
(``"MKT...:GSH..."``) or as a list of chain sequences. Chains are named as in
PDB files, ``A``..``Z``, ``a``..``z``, ``0``..``9`` (`bionemo_lite.structures.chain_id`),
so a request holds at most 62 chains; more is an error naming the record,
raised before any model work.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import InvalidInputError
from .records import Record, clean_protein
from .structures import PDB_CHAIN_IDS, chain_id

CHAIN_SEPARATOR = ":"
MAX_CHAINS = len(PDB_CHAIN_IDS)


def chain_ids(count: int, record: str | None = None) -> list[str]:
    """The ids of a request's `count` chains (proteins, then ligands): ``A``, ``B``, ...

    Raises:
        InvalidInputError: more than `MAX_CHAINS` chains (PDB's one-character ids run out).
    """
    if count > MAX_CHAINS:
        raise InvalidInputError(
            f"{count} chains were given; at most {MAX_CHAINS} are supported (chain ids A-Z, a-z, 0-9)",
            record=record,
        )
    return [chain_id(i) for i in range(count)]


def split_chains(sequence: str | Record | Sequence[str], record: str) -> list[tuple[str, str]]:
    """``(chain id, text)`` per chain of a ``:``-joined sequence or a list of chains, text as given.

    Raises:
        InvalidInputError: not a string or a list of strings, no chain, or too many chains.
    """
    if isinstance(sequence, Record):
        sequence = sequence.sequence
    if isinstance(sequence, str):
        parts = sequence.split(CHAIN_SEPARATOR)
    elif isinstance(sequence, Sequence) and all(isinstance(c, str) for c in sequence):
        if not sequence:
            raise InvalidInputError("no protein chain was given", record=record)
        parts = list(sequence)
    else:
        raise InvalidInputError(
            f"cannot read chains from a {type(sequence).__name__}; pass a sequence, "
            "chains joined with ':' or a list of chains",
            record=record,
        )
    return list(zip(chain_ids(len(parts), record), parts))


def clean_chains(sequence: str | Record | Sequence[str], record: str) -> list[tuple[str, str]]:
    """`split_chains`, every chain a valid protein: ``(chain id, cleaned residues)``.

    Errors keep the record and, for a complex, put the chain into the reason
    (``"chain B: ..."``), so it survives wherever only the reason is shown.

    Raises:
        InvalidInputError: as `split_chains`; an empty chain; an invalid residue
            (with its 1-based position in the chain).
    """
    pairs = split_chains(sequence, record)
    joined = isinstance(sequence, (str, Record)) and len(pairs) > 1
    chains: list[tuple[str, str]] = []
    for cid, text in pairs:
        prefix = f"chain {cid}: " if len(pairs) > 1 else ""
        if not text.strip():
            hint = " (two ':' in a row, or a ':' at the start or end)" if joined else ""
            raise InvalidInputError(f"{prefix}empty chain{hint}", record=record)
        try:
            chains.append((cid, clean_protein(Record(record, text)).sequence))
        except InvalidInputError as exc:
            raise InvalidInputError(prefix + exc.reason, record=record, position=exc.position) from None
    return chains
