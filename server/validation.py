"""Checks every request passes before a backend sees it.

They run on the event loop before any model is loaded, so a bad request is a
422 in microseconds, whatever the backend, and an over-long sequence never
reaches a model (upstream, one such sequence can poison a GPU for every later
request).
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from bionemo_lite.errors import InvalidInputError
from bionemo_lite.records import Record, clean_protein, prepare_proteins
from bionemo_lite.spec import ModelSpec
from bionemo_lite.verbs import length_policy


def check_count(count: int, max_sequences: int) -> None:
    """At most `max_sequences` records per request."""
    if count > max_sequences:
        raise InvalidInputError(
            f"{count} sequences in one request; this server accepts at most {max_sequences} "
            "(setting max_sequences / BIONEMO_LITE_MAX_SEQUENCES): split the request"
        )


def check_proteins(spec: ModelSpec, records: Sequence[Record], truncate: bool) -> tuple[list[Record], list[str]]:
    """Residues and lengths of protein records: the core's `prepare_proteins`, as the model itself runs it.

    Returns:
        The records as the model will see them (cleaned, cut under `truncate`) and the ids that
        were cut; SMILES records unchanged (they need the model's own parser) and no ids.
    """
    if spec.input_kind != "protein":
        return list(records), []
    return prepare_proteins(list(records), spec.max_length, length_policy(truncate))


def chain_names(count: int) -> list[str]:
    """``A``, ``B``, ... as chains are usually named."""
    letters = string.ascii_uppercase
    return [letters[i] if i < len(letters) else f"chain{i + 1}" for i in range(count)]


def check_fold_sequence(spec: ModelSpec, sequence: str, record: str = "sequence") -> None:
    """Every chain of a ``:``-joined complex is a valid protein and the total fits the model.

    Errors name the record as the fold plugins do: ``"sequence"``, or ``"sequence, chain B"``.
    """
    chains = sequence.split(":")
    names = [record] if len(chains) == 1 else [f"{record}, chain {n}" for n in chain_names(len(chains))]
    total = 0
    for name, chain in zip(names, chains):
        total += len(clean_protein(Record(name, chain)).sequence)
    if total > spec.max_length:
        raise InvalidInputError(
            f"{total} residues, more than the model's maximum of {spec.max_length} for one structure "
            "(all chains together)",
            record=record,
        )
