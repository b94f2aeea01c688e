"""Checks every request passes before a backend sees it.

They run on the event loop before any model is loaded, so a bad request is a
422 in microseconds, whatever the backend, and an over-long sequence never
reaches a model (upstream, one such sequence can poison a GPU for every later
request). SMILES are held to length and character bounds here too, so a
string that could crash RDKit (``"C" * 15000``) never reaches the parser.
"""

from __future__ import annotations

from collections.abc import Sequence

from bionemo_lite.chains import split_chains
from bionemo_lite.errors import InvalidInputError
from bionemo_lite.records import LengthPolicy, Record, clean_protein, prepare_inputs
from bionemo_lite.smiles_text import check_smiles_record
from bionemo_lite.spec import ModelSpec
from bionemo_lite.verbs import length_policy


def check_count(count: int, max_sequences: int) -> None:
    """At most `max_sequences` records per request."""
    if count > max_sequences:
        raise InvalidInputError(
            f"{count} sequences in one request; this server accepts at most {max_sequences} "
            "(setting max_sequences / BIONEMO_LITE_MAX_SEQUENCES): split the request"
        )


def check_proteins(
    spec: ModelSpec, records: Sequence[Record], truncate: bool = False, *, on_too_long: LengthPolicy | None = None
) -> tuple[list[Record], list[str]]:
    """The records as the model will see them: the core's `prepare_inputs` for the spec's input kind.

    `on_too_long` (the body's, e.g. ``"window"``: long records pass whole) replaces `truncate` when given.

    Returns:
        The records (proteins cleaned and cut under `truncate`; SMILES stripped and held to
        `check_smiles`, as their validity needs the model's own parser) and the ids that were cut.
    """
    check_smiles(spec, records, truncate or on_too_long == "truncate")
    policy = on_too_long if on_too_long is not None else length_policy(truncate)
    return prepare_inputs(list(records), spec.input_kind, spec.max_length, policy)


def check_smiles(spec: ModelSpec, records: Sequence[Record], truncate: bool = False) -> None:
    """For a SMILES model: every record's length (characters and tokens) and characters, before RDKit.

    A no-op for other input kinds. Tokens are counted with the core's SMILES regex (the
    MegaMolBART tokenizer's); the model counts again with its own checkpoint's tokenizer.
    """
    if spec.input_kind != "smiles":
        return
    for record in records:
        check_smiles_record(record, spec.max_length, length_policy(truncate))


def check_fold_sequence(spec: ModelSpec, sequence: str, record: str = "sequence") -> None:
    """Every chain of a ``:``-joined complex is a valid protein and the total fits the model.

    Errors name the record as the fold plugins do: ``"sequence"``, or ``"sequence, chain B"``.
    """
    chains = split_chains(sequence, record)
    names = [record] if len(chains) == 1 else [f"{record}, chain {cid}" for cid, _ in chains]
    total = 0
    for name, (_, chain) in zip(names, chains):
        total += len(clean_protein(Record(name, chain)).sequence)
    if total > spec.max_length:
        raise InvalidInputError(
            f"{total} residues, more than the model's maximum of {spec.max_length} for one structure "
            "(all chains together)",
            record=record,
        )
