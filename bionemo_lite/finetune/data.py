"""A labelled table for fine-tuning: records (sequences or SMILES) with one target value each.

Read with the project's readers (`bionemo_lite.io.readers.InputFile`), so the id and
sequence/SMILES columns are found as for every batch job; the target is one of the
other columns. A bad row is an `InvalidInputError` naming the record: a training set
with silently dropped rows would give metrics for data the user never chose.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import InvalidInputError
from ..io.readers import InputFile, record_fields
from ..records import Record, prepare_record
from ..weights import sha256_of

Task = Literal["regression", "classification"]
TASKS: tuple[str, ...] = ("regression", "classification")
MIN_RECORDS = 10  # train, validation and test splits each need a few


@dataclass(frozen=True)
class LabelledSet:
    """Records and their targets, in file order.

    Attributes:
        records: the checked records (as the model will see them).
        targets: regression: float64 ``[N]``; classification: int64 class index ``[N]``.
        classes: classification: the labels, sorted (index = class); None for regression.
        data_sha256: sha256 of the file as read (recorded in the card).
    """

    records: list[Record]
    targets: np.ndarray
    classes: list[str] | None
    data_sha256: str

    def __len__(self) -> int:
        return len(self.records)


def read_labelled(
    path: str | Path, target: str, task: Task, input_kind: str, max_length: int
) -> LabelledSet:
    """Read `path` (CSV/TSV with an id column, a ``sequence`` or ``smiles`` column and `target`).

    Raises:
        InvalidInputError: a missing target column, a bad record or target value (naming the
            record), fewer than `MIN_RECORDS` records, or one class only.
    """
    path = Path(path)
    source = InputFile(path, kind=input_kind)
    if source.format not in ("csv", "tsv"):
        raise InvalidInputError(f"{path}: fine-tuning reads a CSV or TSV table with a {target!r} column")
    records: list[Record] = []
    raw: list[str] = []
    for item in source.items():
        if not isinstance(item, Record):
            raise InvalidInputError(item.reason, record=item.id or item.index)
        fields = record_fields(item)
        if target not in fields:
            raise InvalidInputError(f"{path}: no target column {target!r}; the other columns are "
                                    f"{', '.join(map(repr, fields)) or 'none'}")
        value = fields[target].strip()
        if not value:
            raise InvalidInputError(f"empty {target!r}", record=item.id)
        checked, _ = prepare_record(item, input_kind, max_length, "error")
        records.append(Record(checked.id, checked.sequence, len(records)))
        raw.append(value)
    return labelled_set(records, raw, target, task, sha256_of(path), where=str(path))


def rows_sha256(records: Sequence[Record], values: Sequence[object]) -> str:
    """sha256 of records and targets given inline (the HTTP route's data hash): canonical JSON lines."""
    digest = hashlib.sha256()
    for record, value in zip(records, values):
        digest.update(json.dumps([record.id, record.sequence, str(value)]).encode() + b"\n")
    return digest.hexdigest()


def labelled_set(
    records: Sequence[Record], raw: Sequence[object], target: str, task: Task, data_sha256: str, where: str = "data"
) -> LabelledSet:
    """Checked records and their target values (text or numbers) as a `LabelledSet`.

    Raises:
        InvalidInputError: too few records, a target that is not a finite number (regression,
            naming the record), or one class only (classification).
    """
    if task not in TASKS:
        raise InvalidInputError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    records = [Record(r.id, r.sequence, i) for i, r in enumerate(records)]
    if len(records) < MIN_RECORDS:
        raise InvalidInputError(f"{where}: {len(records)} labelled records; fine-tuning needs at least {MIN_RECORDS}")
    if task == "regression":
        values = []
        for record, value in zip(records, raw):
            try:
                number = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise InvalidInputError(f"{target!r} is {value!r}, not a number", record=record.id) from None
            if not math.isfinite(number) or isinstance(value, bool):
                raise InvalidInputError(f"{target!r} is {value!r}, not a finite number", record=record.id)
            values.append(number)
        return LabelledSet(records, np.asarray(values, dtype=np.float64), None, data_sha256)
    labels = [str(v) for v in raw]
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise InvalidInputError(f"{where}: classification needs two classes or more in {target!r}; found {classes}")
    index = {label: i for i, label in enumerate(classes)}
    return LabelledSet(records, np.asarray([index[v] for v in labels], dtype=np.int64), classes, data_sha256)
