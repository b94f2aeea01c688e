"""From a job's verb and options to the batch-job task that runs it, and the files a job keeps.

The options are the sync route's body fields of the verb (`OPTION_BODIES`): they
are checked at submission with that very body class (so a job accepts exactly
what the sync route accepts, minus the input and the answer's format), and
turned into the same `bionemo_lite.jobs` task the CLI runs, so an HTTP job's
output is the CLI job's output.
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bionemo_lite.errors import InvalidInputError
from bionemo_lite.io.atomic import atomic_path
from bionemo_lite.records import Record

from ..schemas import ContactsRequest, EmbedRequest, FoldRequest, GenerateRequest, PredictRequest, ScoreRequest

OPTION_BODIES = {"embed": EmbedRequest, "score": ScoreRequest, "contacts": ContactsRequest,
                 "generate": GenerateRequest, "predict": PredictRequest, "fold": FoldRequest}
# Fields of the sync bodies that are not options of a job: its input, and how the sync answer travels.
NOT_OPTIONS = {"sequences", "smis", "sequence", "id", "include_hiddens", "pae_format", "mutations"}
OUTPUT_FORMATS = {"embed": ("parquet", "h5", "npz"), "contacts": ("parquet", "h5", "npz"),
                  "score": ("parquet", "csv"), "generate": ("parquet", "csv"), "predict": ("parquet", "csv"),
                  "fold": ("zip",)}
INPUT_SUFFIXES = {".fasta": "fasta", ".fa": "fasta", ".faa": "fasta", ".fas": "fasta", ".csv": "csv", ".tsv": "tsv",
                  ".smi": "smi"}


def option_body(verb: str, options: dict[str, Any]) -> Any:
    """The sync body of `verb` holding `options` (and a placeholder input), validated.

    Raises:
        InvalidInputError: an unknown option, a wrong type or value (as the sync route would say).
    """
    if verb == "embed" and "format" in options:
        raise InvalidInputError("embed jobs choose their file with output_format, not options.format")
    bad = sorted(set(options) & NOT_OPTIONS)
    if bad:
        raise InvalidInputError(f"option(s) {', '.join(bad)} are not job options (give the input as records or a "
                                "file, the result file with output_format)")
    data: dict[str, Any] = {**options}
    if verb == "fold":
        data["sequence"] = "A"
    else:
        data["sequences"] = ["A"]
    try:
        return OPTION_BODIES[verb].model_validate(data)
    except ValidationError as exc:
        detail = "; ".join(f"options.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidInputError(detail or "invalid options") from None


def check_against_spec(spec: Any, verb: str, body: Any) -> None:
    """What the spec can tell before any weights load (as the CLI checks): the pooling, the score method.

    Raises:
        InvalidInputError: a pooling or method the model does not offer.
    """
    from bionemo_lite.pooling import get_pooling

    if verb == "embed":
        get_pooling(body.pooling, spec.poolings)
    if verb == "score" and body.method is not None and spec.score_methods:
        spec.score_method(body.method)
    if hasattr(type(body), "on_too_long"):
        body.on_too_long  # truncate with window, or a stride without window  # noqa: B018


def default_output_format(verb: str) -> str:
    return OUTPUT_FORMATS[verb][0]


def check_output_format(verb: str, output_format: str | None) -> str:
    fmt = output_format or default_output_format(verb)
    if fmt not in OUTPUT_FORMATS[verb]:
        raise InvalidInputError(f"a {verb} job writes {' or '.join(OUTPUT_FORMATS[verb])}, not {fmt!r}")
    return fmt


def input_format_of(filename: str) -> str:
    """The input format from an uploaded file's name (``.gz`` allowed)."""
    name = filename.lower()
    name = name[:-3] if name.endswith(".gz") else name
    for suffix, fmt in INPUT_SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    raise InvalidInputError(f"cannot tell the format of {filename!r}: name it .fasta/.fa, .csv, .tsv or .smi")


@dataclass(frozen=True)
class JobFiles:
    """Where a job keeps its input, output and errors (``workdir`` is ``job_dir/<id>/``)."""

    workdir: Path
    input_format: str
    output_format: str
    verb: str

    @property
    def input(self) -> Path:
        suffix = {"fasta": "fasta", "csv": "csv", "tsv": "tsv", "smi": "smi"}[self.input_format]
        return self.workdir / f"input.{suffix}"

    @property
    def output(self) -> Path:
        """The file `run_job` writes (fold: the summary of the structures folder)."""
        if self.verb == "fold":
            return self.workdir / "structures" / "summary.csv"
        return self.workdir / f"results.{self.output_format}"

    @property
    def results(self) -> Path:
        """The file the results download serves."""
        return self.workdir / "results.zip" if self.verb == "fold" else self.output

    @property
    def errors(self) -> Path:
        return Path(f"{self.output}.errors.csv")

    @property
    def manifest(self) -> Path:
        return Path(f"{self.output}.job.sqlite")


def write_inline_input(path: Path, records: list[Record]) -> None:
    """Inline records as an ``id,sequence`` CSV (atomically: a half-written input never runs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "sequence"])
        for record in records:
            writer.writerow([record.id, record.sequence])


def build_task(verb: str, model: Any, options: dict[str, Any], files: JobFiles) -> Any:
    """The `bionemo_lite.jobs` task of `verb` with `options` (validated as at submission)."""
    from bionemo_lite.jobs import ContactsTask, EmbedTask, FoldTask, GenerateTask, PredictTask, ScoreTask

    body = option_body(verb, options)
    if verb == "embed":
        layers = tuple(body.layer) if isinstance(body.layer, list) else (body.layer,)
        return EmbedTask(model, layers=layers, pooling=body.pooling, on_too_long=body.on_too_long)
    if verb == "score":
        return ScoreTask(model, body.method, on_too_long=body.on_too_long)
    if verb == "contacts":
        return ContactsTask(model, on_too_long=body.on_too_long)
    if verb == "predict":
        return PredictTask(model, on_too_long=body.on_too_long)
    if verb == "generate":
        return GenerateTask(model, body.options())
    if verb == "fold":
        outdir = files.output.parent
        outdir.mkdir(parents=True, exist_ok=True)
        extra = body.options()
        fmt = "cif" if body.format == "mmcif" else "pdb"
        return FoldTask(model, outdir, format=fmt, num_recycles=extra.get("num_recycles"),
                        chunk_size=extra.get("chunk_size"), relax=body.relax)
    raise InvalidInputError(f"unknown verb {verb!r}")


def zip_fold_results(files: JobFiles) -> Path:
    """``results.zip``: every structure of the job, ``summary.csv`` and, when some failed, ``errors.csv``."""
    outdir = files.output.parent
    with atomic_path(files.results) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(outdir.iterdir()):
            if path.is_file() and not path.name.endswith((".job.sqlite", ".job.lock", ".part")) \
                    and ".part" not in path.name and not path.name.endswith("-wal") \
                    and not path.name.endswith("-journal"):
                archive.write(path, "errors.csv" if path.name.endswith(".errors.csv") else path.name)
    return files.results
