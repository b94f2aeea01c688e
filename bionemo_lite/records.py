"""Input records and their validation, shared by every front door.

Users pass sequences as a string, a list of strings (ids are then the 0-based
indices), a ``{id: sequence}`` mapping, ``(id, sequence)`` pairs or `Record`s.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Literal, Union

from annotated_types import Predicate

from .errors import InvalidInputError

_WINDOW_WITH_STRIDE = re.compile(r"window:\d+")
# The predicate lets the doors' option checks (`bionemo_lite.binding`) refuse e.g. "cut" up front.
LengthPolicy = Union[Literal["error", "truncate", "window"],
                     Annotated[str, Predicate(lambda text: _WINDOW_WITH_STRIDE.fullmatch(text) is not None)]]
"""What to do with a record over the model's maximum: ``"error"``, ``"truncate"`` (cut it) or ``"window"``
(overlapping windows, stride half the window; ``"window:STRIDE"`` sets the stride: `bionemo_lite.windows`)."""
WINDOW = "window"

PROTEIN_ALPHABET = frozenset("ACDEFGHIKLMNPQRSTVWY" + "XBUZO")
WHITESPACE = re.compile(r"\s+")  # removed from sequences (FASTA line breaks, spaces) and mutations


@dataclass(frozen=True)
class Record:
    """One input: an id, its text (residues or SMILES) and its place in the input."""

    id: str
    sequence: str
    index: int = 0


Inputs = Union[str, Record, Mapping[str, str], Sequence[Union[str, tuple[str, str], Record]]]


def as_records(inputs: Inputs) -> list[Record]:
    """Normalise any accepted input shape into a list of `Record`s (input order kept).

    Raises:
        InvalidInputError: empty input, an entry of an unknown type, or two
            records with the same id.
    """
    if isinstance(inputs, (str, Record)):
        inputs = [inputs]
    if isinstance(inputs, Mapping):
        items: Iterable = list(inputs.items())
    elif isinstance(inputs, Iterable):
        items = list(inputs)
    else:
        raise InvalidInputError(
            f"cannot read an input of type {type(inputs).__name__}: pass a sequence, a list, a {{id: sequence}} dict "
            "or (id, sequence) pairs"
        )
    records: list[Record] = []
    for i, item in enumerate(items):
        if isinstance(item, Record):
            records.append(replace(item, index=i))
        elif isinstance(item, str):
            records.append(Record(str(i), item, i))
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            rid, seq = item
            if not isinstance(seq, str):
                raise InvalidInputError(f"sequence must be a string, got {type(seq).__name__}", record=str(rid))
            records.append(Record(str(rid), seq, i))
        else:
            raise InvalidInputError(f"cannot read an input of type {type(item).__name__}", record=i)
    if not records:
        raise InvalidInputError("no input records were given")
    seen: dict[str, int] = {}
    for r in records:
        if r.id in seen:
            raise InvalidInputError(
                f"duplicate record id (also used by record #{seen[r.id]})", record=r.id
            )
        seen[r.id] = r.index
    return records


def clean_protein(record: Record) -> Record:
    """Strip whitespace and upper-case; reject anything outside the 25-letter alphabet.

    Raises:
        InvalidInputError: naming the record, the 1-based position and the character.
    """
    seq = WHITESPACE.sub("", record.sequence).upper()
    if not seq:
        raise InvalidInputError("empty sequence", record=record.id)
    for pos, ch in enumerate(seq, start=1):
        if ch not in PROTEIN_ALPHABET:
            raise InvalidInputError(
                f"invalid residue {ch!r}; allowed are the 20 standard amino acids and X B U Z O"
                + (" (gaps are not allowed: pass the ungapped sequence)" if ch in "-." else ""),
                record=record.id,
                position=pos,
            )
    return replace(record, sequence=seq)


def window_stride(policy: LengthPolicy, max_length: int) -> int | None:
    """The stride of a window policy (``"window"``: half of `max_length`; ``"window:STRIDE"``), None for the others.

    Raises:
        InvalidInputError: an unknown policy, or a stride that is not an integer in ``1..max_length``.
    """
    if policy in ("error", "truncate"):
        return None
    kind, _, stride = policy.partition(":") if isinstance(policy, str) else ("", "", "")
    if kind != WINDOW:
        raise InvalidInputError(
            f"length policy must be 'error', 'truncate', 'window' or 'window:STRIDE', got {policy!r}"
        )
    if not stride:
        return max(1, max_length // 2)
    if not stride.isdigit() or not 1 <= int(stride) <= max_length:
        raise InvalidInputError(
            f"window stride must be an integer from 1 to the window ({max_length} residues), got {stride!r}"
        )
    return int(stride)


def apply_length_policy(
    records: Sequence[Record], max_length: int, policy: LengthPolicy = "error"
) -> tuple[list[Record], list[str]]:
    """Enforce a model's length limit *before* any record reaches the model.

    Under a window policy (``"window"``, ``"window:STRIDE"``) every record passes whole: the model
    reads a long one through overlapping windows (`bionemo_lite.windows`).

    Returns:
        The records (cut to `max_length` under ``"truncate"``) and the ids that were cut.
    """
    if window_stride(policy, max_length) is not None:
        return list(records), []
    out: list[Record] = []
    truncated: list[str] = []
    for r in records:
        if len(r.sequence) > max_length:
            if policy == "error":
                raise InvalidInputError(
                    f"sequence has {len(r.sequence)} residues, more than the model's maximum of "
                    f"{max_length}; shorten it, ask for truncation (Python: on_too_long='truncate'; CLI: --truncate; "
                    'HTTP: "truncate": true) or, where the model offers it, for overlapping windows '
                    """(on_too_long='window'; --window; "window": true)""",
                    record=r.id,
                )
            r = replace(r, sequence=r.sequence[:max_length])
            truncated.append(r.id)
        out.append(r)
    return out, truncated


def check_protein(record: Record, max_length: int, policy: LengthPolicy = "error") -> tuple[Record, bool]:
    """`clean_protein` + `apply_length_policy` for one record.

    Returns:
        The record as the model sees it (cleaned; cut to `max_length` under
        ``"truncate"``) and whether it was cut.

    Raises:
        InvalidInputError: a bad residue, an empty sequence, or (under
            ``"error"``) a sequence over `max_length`, naming the record.
    """
    (checked,), cut = apply_length_policy([clean_protein(record)], max_length, policy)
    return checked, bool(cut)


def prepare_proteins(
    inputs: Inputs, max_length: int, on_too_long: LengthPolicy = "error"
) -> tuple[list[Record], list[str]]:
    """`as_records` + `check_protein` for every record.

    Returns:
        The records as the model sees them, and the ids of those that were cut.
    """
    return prepare_inputs(inputs, "protein", max_length, on_too_long)


def prepare_record(
    record: Record, input_kind: str, max_length: int, on_too_long: LengthPolicy = "error"
) -> tuple[Record, bool]:
    """One record as a model of `input_kind` (``ModelSpec.input_kind``) will see it, and whether it was cut.

    Proteins are cleaned and held to `max_length` residues (`check_protein`).
    SMILES are only stripped: their validity and their length in tokens need
    the model's own parser and tokenizer, so the model checks them.

    Raises:
        InvalidInputError: a bad protein (naming the record), or an unknown input kind.
    """
    if input_kind == "protein":
        return check_protein(record, max_length, on_too_long)
    if input_kind == "smiles":
        return replace(record, sequence=record.sequence.strip()), False
    raise InvalidInputError(f"unknown input kind {input_kind!r}: expected 'protein' or 'smiles'")


def prepare_inputs(
    inputs: Inputs, input_kind: str, max_length: int, on_too_long: LengthPolicy = "error"
) -> tuple[list[Record], list[str]]:
    """User inputs as validated records for a model of `input_kind`: every door calls this.

    Returns:
        The records as the model will see them (`prepare_record`), and the ids of those that were cut.
    """
    prepared = [prepare_record(r, input_kind, max_length, on_too_long) for r in as_records(inputs)]
    return [r for r, _ in prepared], [r.id for r, cut in prepared if cut]
