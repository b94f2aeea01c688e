"""The verbs as batch-job tasks: embed, contacts, score (per record or per mutation), generate, fold.

Each task works against a verb Protocol of `bionemo_lite.verbs` only, never a
model family (a local model and a `RemoteModel` over Triton are the same to
it): validate a record (`prepare`), run a chunk through the verb with the
verb's typed options (`run`), store a record's result in the manifest
(`encode`/`decode`) and write the output file (`write`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..batching import is_out_of_memory
from ..chains import clean_chains
from ..errors import InvalidInputError
from ..io.atomic import write_text_atomic
from ..io.readers import Fields, TableRecord, record_fields
from ..io.writers import (
    CONTACTS_COLUMN,
    ContactRow,
    EmbeddingRow,
    embedding_column,
    peek_first,
    write_contacts,
    write_embeddings,
    write_table,
)
from ..mutations import duplicate_reason, normalize_mutation, parse_mutation
from ..records import WHITESPACE, LengthPolicy, Record, clean_protein, prepare_record, window_stride
from ..results import RecordError
from ..smiles_text import check_smiles_record
from ..verbs import (
    ContactPredictor,
    ContactsOptions,
    Embedder,
    EmbedOptions,
    Folder,
    FoldOptions,
    GenerateOptions,
    Generator,
    Named,
    ScoreOptions,
    Scorer,
)
from ..verbs import PredictOptions, Predictor
from .runner import ChunkOutcome, failure_reason


def _input_kind(model: Named) -> str:
    spec = getattr(model, "spec", None)
    return getattr(spec, "input_kind", "protein")


def _prepare(model: Named, record: Record, on_too_long: LengthPolicy) -> Record:
    """Clean and check one record the way the verb will, so a bad one never reaches the model.

    The core's `prepare_record` for the model's input kind (proteins: residues
    and length limit; SMILES: only stripped, the model parses them). A record
    over the limit is handed on cleaned but whole: the verb cuts it itself and
    reports the cut in its result, which fills the job's ``truncated`` column.
    """
    if _input_kind(model) == "smiles":  # length and characters before RDKit: a crash there ends the job
        check_smiles_record(record, model.max_length, on_too_long)
    checked, cut = prepare_record(record, _input_kind(model), model.max_length, on_too_long)
    if not checked.sequence:
        raise InvalidInputError("empty input", record=record.id)
    return clean_protein(record) if cut else checked


# Under a window policy the outputs get a `windowed` column: whether the record was read through windows.
WINDOWED_COLUMN = "windowed"


def _windowing(model: Named, on_too_long: LengthPolicy) -> bool:
    """Whether `on_too_long` is a window policy (checked here, so a bad stride fails the job, not each record)."""
    return window_stride(on_too_long, model.max_length) is not None


def _errors_by_id(errors: Iterable[RecordError]) -> dict[str, str]:
    return {e.id: (f"position {e.position}: {e.reason}" if e.position is not None else e.reason) for e in errors}


def _encode_arrays(meta: dict[str, Any], arrays: dict[int, np.ndarray]) -> bytes:
    """A manifest payload: 4-byte header length, a JSON header, then raw little-endian float32 arrays.

    Plain bytes (no pickle, no zip): decoding is a `np.frombuffer` per array,
    which keeps writing the final output from millions of rows fast.
    """
    header = {**meta, "arrays": [[int(key), list(np.shape(arr))] for key, arr in arrays.items()]}
    head = json.dumps(header).encode("utf-8")
    body = b"".join(np.ascontiguousarray(arr, dtype="<f4").tobytes() for arr in arrays.values())
    return len(head).to_bytes(4, "little") + head + body


def _decode_arrays(blob: bytes) -> tuple[dict[str, Any], dict[int, np.ndarray]]:
    size = int.from_bytes(blob[:4], "little")
    meta = json.loads(blob[4 : 4 + size])
    offset = 4 + size
    arrays: dict[int, np.ndarray] = {}
    for key, shape in meta.pop("arrays"):
        count = int(np.prod(shape))
        arrays[key] = np.frombuffer(blob, dtype="<f4", count=count, offset=offset).reshape(shape)
        offset += 4 * count
    return meta, arrays


def extra_columns(first: tuple[Record, Any] | None, taken: Sequence[str]) -> list[tuple[str, str]]:
    """``(input column, output column)`` for the extra input columns the records carry (`TableRecord`).

    They follow the result's own columns; one whose name the output uses
    already (``score``, ``length``...) is written as ``input_<name>``.
    """
    if first is None:
        return []
    layout: list[tuple[str, str]] = []
    used = set(taken)
    for name in record_fields(first[0]):
        column = name
        while column in used:
            column = f"input_{column}"
        used.add(column)
        layout.append((name, column))
    return layout


def _extras(record: Record, layout: list[tuple[str, str]]) -> dict[str, str]:
    fields = record_fields(record)
    return {column: fields.get(name) for name, column in layout}


def _string_types(layout: list[tuple[str, str]]) -> dict[str, str]:
    return {**_TYPES, **{column: "string" for _, column in layout}}


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload).encode("utf-8")


class JsonPayloads:
    """A task whose per-record results are kept in the manifest as JSON."""

    encode = staticmethod(_json_bytes)

    def decode(self, blob: bytes) -> dict[str, Any]:
        return json.loads(blob)


def write_rows(
    output: Path,
    done: Iterable[tuple[Record, Any]],
    columns: list[str],
    row: Callable[[Record, Any], dict[str, Any]] = lambda rec, payload: payload,
) -> int:
    """One table row per finished record (`row` of its payload), the input's extra columns after `columns`."""
    first, pairs = peek_first(done)
    layout = extra_columns(first, columns)
    rows = ({"id": rec.id, **row(rec, p), **_extras(rec, layout)} for rec, p in pairs)
    return write_table(output, rows, columns + [c for _, c in layout], _string_types(layout))


@dataclass
class EmbedTask:
    """``embed`` as a job: one row per record with its pooled or per-residue embeddings."""

    model: Embedder
    layers: Sequence[int] = (-1,)
    pooling: str = "mean"
    on_too_long: LengthPolicy = "error"
    tokens_per_batch: int | None = None
    verb: str = field(default="embed", init=False)

    def __post_init__(self) -> None:
        _windowing(self.model, self.on_too_long)

    def params(self) -> dict[str, Any]:
        return {"layers": [int(x) for x in self.layers], "pooling": self.pooling, "on_too_long": self.on_too_long}

    def prepare(self, record: Record) -> Record:
        return _prepare(self.model, record, self.on_too_long)

    def run(self, records: list[Record]) -> ChunkOutcome:
        options = EmbedOptions(tuple(int(x) for x in self.layers), self.pooling, self.on_too_long,
                               self.tokens_per_batch)
        emb = options.run(self.model, records)
        by_id = {r.id: r for r in records}
        truncated = set(emb.truncated)
        out = ChunkOutcome(errors=_errors_by_id(emb.errors))
        for i, rid in enumerate(emb.ids):
            out.results[rid] = {
                "sequence": by_id[rid].sequence,
                "length": int(emb.lengths[i]),
                "truncated": rid in truncated,
                WINDOWED_COLUMN: rid in emb.windowed,
                "layers": {int(lay): np.asarray(emb.by_layer[lay][i], dtype=np.float32) for lay in emb.layers},
            }
        return out

    def encode(self, payload: dict[str, Any]) -> bytes:
        return _encode_arrays(
            {k: payload[k] for k in ("sequence", "length", "truncated", WINDOWED_COLUMN)}, payload["layers"]
        )

    def decode(self, blob: bytes) -> dict[str, Any]:
        meta, layers = _decode_arrays(blob)
        return {**meta, "layers": layers}

    def write(self, output: Path, done: Iterable[tuple[Record, Any]]) -> int:
        first, rows = peek_first(done)
        # Absolute layer indices come from the results (the request may say -1).
        layers = tuple(first[1]["layers"]) if first else tuple(int(x) for x in self.layers)
        taken = ["id", "sequence", "length", "truncated", "layer", "layers", "model", "pooling",
                 *(embedding_column(lay, layers) for lay in layers)]
        layout = extra_columns(first, taken)
        # The writers' own columns are fixed: `windowed` ("true"/"false") travels as a text column after them.
        windowed = [WINDOWED_COLUMN] if _windowing(self.model, self.on_too_long) else []

        def extras(rec: Record, p: dict[str, Any]) -> dict[str, str]:
            return {**_extras(rec, layout), **{c: str(bool(p.get(c))).lower() for c in windowed}}

        return write_embeddings(
            output,
            (EmbeddingRow(rec.id, p["sequence"], p["length"], p["layers"], p["truncated"], extras(rec, p))
             for rec, p in rows),
            model=self.model.name,
            layers=layers,
            pooling=self.pooling,
            extra_columns=[column for _, column in layout] + windowed,
        )


@dataclass
class ContactsTask:
    """Contact maps as a job: one ``[L, L]`` array of contact probabilities per record (ESM-2's ``contacts``)."""

    model: ContactPredictor
    on_too_long: LengthPolicy = "error"
    tokens_per_batch: int | None = None
    verb: str = field(default="contacts", init=False)

    def params(self) -> dict[str, Any]:
        return {"on_too_long": self.on_too_long}

    def prepare(self, record: Record) -> Record:
        return _prepare(self.model, record, self.on_too_long)

    def run(self, records: list[Record]) -> ChunkOutcome:
        maps = ContactsOptions(self.on_too_long, self.tokens_per_batch).run(self.model, records)
        out = ChunkOutcome()
        for record, contacts in zip(records, maps):
            out.results[record.id] = {
                "sequence": record.sequence,
                "length": int(np.shape(contacts)[0]),
                "truncated": len(record.sequence) > self.model.max_length,
                "contacts": np.asarray(contacts, dtype=np.float32),
            }
        return out

    def encode(self, payload: dict[str, Any]) -> bytes:
        return _encode_arrays({k: payload[k] for k in ("sequence", "length", "truncated")}, {0: payload["contacts"]})

    def decode(self, blob: bytes) -> dict[str, Any]:
        meta, arrays = _decode_arrays(blob)
        return {**meta, "contacts": arrays[0]}

    def write(self, output: Path, done: Iterable[tuple[Record, Any]]) -> int:
        first, rows = peek_first(done)
        layout = extra_columns(first, ["id", "sequence", "length", "truncated", "model", "content", CONTACTS_COLUMN])
        return write_contacts(
            output,
            (ContactRow(rec.id, p["sequence"], p["length"], p["contacts"], p["truncated"], _extras(rec, layout))
             for rec, p in rows),
            model=self.model.name,
            extra_columns=[column for _, column in layout],
        )


SCORE_COLUMNS = ["id", "sequence", "score", "truncated"]
# `sequence` is the mutant, `wild_type` the wild type as scored (cut under --truncate, then `truncated` is true).
MUTATION_COLUMNS = ["id", "mutation", "sequence", "wild_type", "score", "truncated"]
_TYPES = {"id": "string", "sequence": "string", "mutation": "string", "wild_type": "string", "score": "float64",
          "truncated": "bool", WINDOWED_COLUMN: "bool",
          "seed": "string", "generated": "string", "sample": "int64", "length": "int64", "path": "string",
          "mean_plddt": "float64", "ptm": "float64"}


@dataclass
class ScoreTask(JsonPayloads):
    """``score`` per record (e.g. ESM-2 pseudo-log-likelihood, SMILES log-likelihood)."""

    model: Scorer
    method: str | None = None
    on_too_long: LengthPolicy = "error"
    tokens_per_batch: int | None = None
    verb: str = field(default="score", init=False)

    def __post_init__(self) -> None:
        _windowing(self.model, self.on_too_long)

    def params(self) -> dict[str, Any]:
        return {"method": self.method, "on_too_long": self.on_too_long}

    def prepare(self, record: Record) -> Record:
        return _prepare(self.model, record, self.on_too_long)

    def run(self, records: list[Record]) -> ChunkOutcome:
        scores = ScoreOptions(self.method, self.on_too_long, self.tokens_per_batch).run(self.model, records)
        by_id = {r.id: r for r in records}
        truncated = set(scores.truncated)
        out = ChunkOutcome(errors=_errors_by_id(scores.errors))
        for rid, value in zip(scores.ids, np.asarray(scores.scores, dtype=np.float64).tolist()):
            # Windowed from the length (a remote model's answer may not say): long and not cut.
            windowed = rid not in truncated and len(by_id[rid].sequence) > self.model.max_length
            out.results[rid] = {"sequence": by_id[rid].sequence, "score": value, "truncated": rid in truncated,
                                WINDOWED_COLUMN: windowed}
        return out

    def write(self, output: Path, done: Iterable[tuple[Record, Any]]) -> int:
        windowed = [WINDOWED_COLUMN] if _windowing(self.model, self.on_too_long) else []
        return write_rows(output, done, SCORE_COLUMNS + windowed)


@dataclass
class MutationSource:
    """The work items of a variant-effect job: one per mutation of one wild type.

    Each item is a `Record` whose id is the mutation, normalised (upper case,
    no spaces: `normalize_mutation`), and whose text is the wild type (so the
    manifest key changes when either does). A mutation listed twice, in any
    case, is reported once as a duplicate.
    """

    wild_type: Record
    mutations: Sequence[str]
    fields: Sequence[Fields] | None = None

    def items(self) -> Iterator[Record | RecordError]:
        """One record per mutation (a `TableRecord` with its row's other columns, if `fields` are given)."""
        first_spelling: dict[str, str] = {}
        for i, mutation in enumerate(self.mutations):
            try:
                name = normalize_mutation(mutation)
            except InvalidInputError as exc:
                yield RecordError(str(mutation), i, exc.reason)
                continue
            if name in first_spelling:
                yield RecordError(name, i, f"{duplicate_reason(first_spelling[name])}; skipped")
                continue
            first_spelling[name] = mutation
            fields = self.fields[i] if self.fields is not None else ()
            text = self.wild_type.sequence
            yield TableRecord(name, text, i, fields) if fields else Record(name, text, i)

    def count(self) -> int:
        return len(self.mutations)


@dataclass
class MutationScoreTask(JsonPayloads):
    """``score`` with ``masked_marginals`` / ``wt_marginals``: one row per mutation of one wild type.

    A protein wild type is checked (and, with ``on_too_long="truncate"``, cut) once, here:
    the model scores the cut wild type, each mutation is checked against it
    (a position past the cut fails alone, with its own message). Each output
    row holds the mutant (``sequence``), the wild type it was made from
    (``wild_type``, as scored) and whether that was cut (``truncated``).

    Attributes:
        wild_type_truncated: whether the wild type was cut to the model's maximum length.
    """

    model: Scorer
    wild_type: Record
    method: str
    on_too_long: LengthPolicy = "error"
    tokens_per_batch: int | None = None
    verb: str = field(default="score", init=False)
    wild_type_truncated: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.wild_type, self.wild_type_truncated = prepare_record(
            self.wild_type, _input_kind(self.model), self.model.max_length, self.on_too_long
        )

    def params(self) -> dict[str, Any]:
        return {"method": self.method, "on_too_long": self.on_too_long, "wild_type_id": self.wild_type.id}

    def prepare(self, record: Record) -> Record:
        parse_mutation(record.id, self.wild_type.sequence, truncated=self.wild_type_truncated)
        return record

    def run(self, records: list[Record]) -> ChunkOutcome:
        mutations = [r.id for r in records]
        options = ScoreOptions(self.method, self.on_too_long, self.tokens_per_batch, mutations=mutations)
        scores = options.run(self.model, [self.wild_type])
        names = list(scores.mutations) if scores.mutations is not None else mutations
        out = ChunkOutcome()
        for mutation, value in zip(names, np.asarray(scores.scores, dtype=np.float64).tolist()):
            out.results[mutation] = {"score": value}
        for err in scores.errors:
            reason = _errors_by_id([err])[err.id]
            targets = [err.id] if err.id in mutations else [m for m in mutations if m not in out.results]
            for m in targets:  # an error on the wild type itself fails every mutation of the chunk
                out.errors[m] = reason
        return out

    def write(self, output: Path, done: Iterable[tuple[Record, Any]]) -> int:
        def row(rec: Record, payload: dict[str, Any]) -> dict[str, Any]:
            return {"id": self.wild_type.id, "mutation": rec.id, "sequence": self.mutant(rec.id),
                    "wild_type": self.wild_type.sequence, "score": payload["score"],
                    "truncated": self.wild_type_truncated,
                    **({WINDOWED_COLUMN: len(self.wild_type.sequence) > self.model.max_length} if windowed else {})}

        windowed = _windowing(self.model, self.on_too_long)
        return write_rows(output, done, MUTATION_COLUMNS + ([WINDOWED_COLUMN] if windowed else []), row)

    def mutant(self, mutation: str) -> str:
        """The sequence `mutation` makes of the (scored) wild type."""
        residues = list(self.wild_type.sequence)
        for sub in parse_mutation(mutation, self.wild_type.sequence, truncated=self.wild_type_truncated).substitutions:
            residues[sub.position - 1] = sub.mt
        return "".join(residues)


@dataclass
class GenerateTask(JsonPayloads):
    """``generate`` as a job: one row per generated sample (id, seed, sample, generated, score, properties)."""

    model: Generator
    options: dict[str, Any] = field(default_factory=dict)
    verb: str = field(default="generate", init=False)

    def params(self) -> dict[str, Any]:
        return {"options": self.options}

    def prepare(self, record: Record) -> Record:
        if _input_kind(self.model) == "protein":
            # '<mask>' marks the positions to fill; the model validates the rest.
            text = WHITESPACE.sub("", record.sequence)
            if not text:
                raise InvalidInputError("empty sequence", record=record.id)
            return replace(record, sequence=text)
        return _prepare(self.model, record, "error")

    def run(self, records: list[Record]) -> ChunkOutcome:
        generated = GenerateOptions(self.options).run(self.model, records)
        out = ChunkOutcome(errors=_errors_by_id(generated.errors))
        for rec in generated.records:
            out.results[rec.id] = {
                "seed": rec.seed,
                "generated": list(rec.generated),
                "scores": [float(s) for s in rec.scores],
                "properties": {k: [float(v) for v in vals] for k, vals in rec.properties.items()},
            }
        return out

    def write(self, output: Path, done: Iterable[tuple[Record, Any]]) -> int:
        first, pairs = peek_first(done)
        properties = sorted(first[1]["properties"]) if first else []
        columns = ["id", "seed", "sample", "generated", "score", *properties]
        layout = extra_columns(first, columns)

        def rows() -> Iterator[dict[str, Any]]:
            for rec, p in pairs:
                extras = _extras(rec, layout)
                if not p["generated"]:
                    # Nothing kept (e.g. every sampled SMILES was invalid): one empty row, so the
                    # seed is in the output instead of silently missing.
                    yield {"id": rec.id, "seed": p["seed"], **extras}
                    continue
                for k, text in enumerate(p["generated"]):
                    row = {"id": rec.id, "seed": p["seed"], "sample": k, "generated": text,
                           "score": p["scores"][k] if k < len(p["scores"]) else None}
                    for name in properties:
                        values = p["properties"].get(name, [])
                        row[name] = values[k] if k < len(values) else None
                    yield {**row, **extras}

        return write_table(output, rows(), columns + [c for _, c in layout], _string_types(layout))


_UNSAFE = re.compile(r"[^A-Za-z0-9._|=+-]")


def structure_filename(record_id: str, suffix: str) -> str:
    """A file name for a record's structure; ids that are not safe file names get a hash to stay unique."""
    safe = _UNSAFE.sub("_", record_id)
    if safe != record_id or safe.startswith("."):
        safe = f"{safe.lstrip('.')}_{hashlib.sha1(record_id.encode()).hexdigest()[:8]}"
    return f"{safe}.{suffix}"


SUMMARY_COLUMNS = ["id", "length", "mean_plddt", "ptm", "path"]
RELAX_COLUMNS = ["relaxed_path", "energy_before", "energy_after", "rmsd", "clashes_before", "clashes_after",
                 "relax_seconds"]
"""The summary's columns after `SUMMARY_COLUMNS` when the job relaxes (energies kJ/mol, RMSD A)."""


@dataclass
class FoldTask(JsonPayloads):
    """``fold`` as a job: one structure file per record in `outdir`, then ``summary.csv``.

    Each structure is written (atomically) as soon as it is predicted, and the
    job commits after every record: folding is slow, nothing should be lost.
    """

    model: Folder
    outdir: Path
    format: str = "pdb"
    num_recycles: int | None = None
    chunk_size: int | None = None
    msa_dir: Path | None = None
    relax: bool = False
    verb: str = field(default="fold", init=False)

    def params(self) -> dict[str, Any]:
        params = {"format": self.format, "num_recycles": self.num_recycles,
                  "msa_dir": str(self.msa_dir) if self.msa_dir else None}
        return {**params, "relax": True} if self.relax else params  # jobs started before relax keep their identity

    def prepare(self, record: Record) -> Record:
        # Chains are joined with ':'; each must be a valid protein (the model checks its own limits).
        text = WHITESPACE.sub("", record.sequence).upper()
        clean_chains(text, record.id)
        return replace(record, sequence=text)

    def _options(self, record: Record) -> FoldOptions:
        extra: dict[str, Any] = {}
        if self.msa_dir is not None:
            a3m = self.msa_dir / f"{record.id}.a3m"
            if a3m.is_file():
                extra["msa"] = a3m.read_text(encoding="utf-8")
        return FoldOptions(self.num_recycles, self.chunk_size, extra, relax=self.relax)

    def run(self, records: list[Record]) -> ChunkOutcome:
        out = ChunkOutcome()
        suffix = "cif" if self.format == "cif" else "pdb"
        other = "pdb" if suffix == "cif" else "cif"
        for record in records:
            try:
                # The record's id names the structure and its errors.
                structure = self._options(record).run(self.model, record)
            except InvalidInputError as exc:
                out.errors[record.id] = failure_reason(exc)
                continue
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                out.errors[record.id] = f"out of memory: {exc}"
                continue
            text = structure.mmcif if suffix == "cif" else structure.pdb
            if text is None:
                why = structure.extra.get(f"{suffix}_error") or structure.extra.get("pdb_error") or "no text returned"
                out.errors[record.id] = f"no {suffix.upper()} output ({why}); try --format {other}"
                continue
            path = self.outdir / structure_filename(record.id, suffix)
            relaxed = structure.relaxed
            relaxed_text = None
            if relaxed is not None:
                relaxed_text = relaxed.mmcif if suffix == "cif" else relaxed.pdb
                if relaxed_text is None:
                    out.errors[record.id] = f"no relaxed {suffix.upper()} output; try --format {other}"
                    continue
            write_text_atomic(path, text)
            out.results[record.id] = {
                "length": len(record.sequence.replace(":", "")),
                "mean_plddt": structure.mean_plddt,
                "ptm": structure.ptm,
                "path": str(path),
            }
            if relaxed is not None:
                relaxed_path = self.outdir / structure_filename(record.id, f"relaxed.{suffix}")
                write_text_atomic(relaxed_path, relaxed_text)
                out.results[record.id].update({
                    "relaxed_path": str(relaxed_path), "energy_before": relaxed.energy_before,
                    "energy_after": relaxed.energy_after, "rmsd": relaxed.rmsd,
                    "clashes_before": relaxed.clashes_before, "clashes_after": relaxed.clashes_after,
                    "relax_seconds": relaxed.seconds,
                })
        return out

    def write(self, output: Path, done: Iterable[tuple[Record, Any]]) -> int:
        return write_rows(output, done, SUMMARY_COLUMNS + (RELAX_COLUMNS if self.relax else []))


PREDICT_COLUMNS = ["id", "sequence", "prediction", "truncated"]


def probability_column(label: str) -> str:
    """The output column of one class's probability (``p_<label>``)."""
    return f"p_{label}"


@dataclass
class PredictTask(JsonPayloads):
    """``predict`` (a fine-tuned model) as a job: one row per record with its prediction
    (regression: the value; classification: the most probable class and one ``p_<class>`` column per class)."""

    model: Predictor
    on_too_long: LengthPolicy = "error"
    tokens_per_batch: int | None = None
    verb: str = field(default="predict", init=False)

    def params(self) -> dict[str, Any]:
        return {"on_too_long": self.on_too_long}

    def prepare(self, record: Record) -> Record:
        return _prepare(self.model, record, self.on_too_long)

    def run(self, records: list[Record]) -> ChunkOutcome:
        result = PredictOptions(self.on_too_long, self.tokens_per_batch).run(self.model, records)
        by_id = {r.id: r for r in records}
        truncated = set(result.truncated)
        out = ChunkOutcome(errors=_errors_by_id(result.errors))
        for i, rid in enumerate(result.ids):
            row: dict[str, Any] = {"sequence": by_id[rid].sequence, "prediction": result.values[i],
                                   "truncated": rid in truncated}
            if result.probabilities is not None and result.classes is not None:
                row["probabilities"] = dict(zip(result.classes, np.asarray(result.probabilities[i]).tolist()))
            out.results[rid] = row
        return out

    def write(self, output: Path, done: Iterable[tuple[Record, Any]]) -> int:
        first, pairs = peek_first(done)
        classes = list(first[1].get("probabilities", {})) if first else []
        columns = PREDICT_COLUMNS + [probability_column(c) for c in classes]
        layout = extra_columns(first, columns)
        types = {**_string_types(layout), "prediction": "string" if classes else "float64",
                 **{probability_column(c): "float64" for c in classes}}
        rows = ({"id": rec.id, "sequence": p["sequence"], "prediction": p["prediction"], "truncated": p["truncated"],
                 **{probability_column(c): p["probabilities"][c] for c in classes}, **_extras(rec, layout)}
                for rec, p in pairs)
        return write_table(output, rows, columns + [c for _, c in layout], types)
