"""`JobService`: the jobs API inside the service (``app.state.jobs``), over the store and the job folders.

Every method takes the owner (the API key's name, ``anonymous`` without keys):
another owner's job is `JobNotFoundError`, exactly like an unknown id, so ids
cannot be probed. Submitting writes the input into ``job_dir/<id>/`` and a
``queued`` row; the workers (`server.jobs.worker`, separate processes) do the
rest.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bionemo_lite.errors import BionemoLiteError, InvalidInputError
from bionemo_lite.records import Record, as_records
from bionemo_lite.registry import get_spec, require_verb

from .execute import JobFiles, check_against_spec, check_output_format, input_format_of, option_body, write_inline_input
from .schemas import JobRequest, JobView
from .store import FINAL, JobRow, JobStore

ANONYMOUS = "anonymous"


class JobNotFoundError(BionemoLiteError, KeyError):
    """No job of this id for this owner (HTTP 404)."""

    def __init__(self, job_id: str):
        super().__init__(f"no job {job_id!r}")
        self.job_id = job_id

    def __str__(self) -> str:
        return f"no job {self.job_id!r}"


class JobNotDoneError(BionemoLiteError):
    """The job has no results yet (HTTP 409)."""

    def __init__(self, job_id: str, state: str):
        super().__init__(f"job {job_id!r} is {state}: its results are there once it is done")
        self.state = state


def store_url(settings: Any) -> str:
    """``job_store``, else a SQLite file under the job folder's parent (the cache / home dir)."""
    if settings.job_store:
        return settings.job_store
    folder = job_dir(settings).parent
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'jobs.sqlite'}"


def job_dir(settings: Any) -> Path:
    """Where jobs keep their files: ``job_dir``, else ``$BIONEMO_LITE_HOME/jobs``."""
    from bionemo_lite.weights import cache_home

    return Path(settings.job_dir).expanduser() if settings.job_dir else cache_home() / "jobs"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def view_of(row: JobRow) -> JobView:
    finished = row.n_done + row.n_failed if row.state in FINAL else row.n_done
    progress = 1.0 if row.state == "done" else (min(1.0, finished / row.n_total) if row.n_total else 0.0)
    return JobView(id=row.id, owner=row.owner, verb=row.verb, model=row.model, state=row.state,  # type: ignore[arg-type]
                   n_done=row.n_done, n_failed=row.n_failed, n_total=row.n_total, progress=progress,
                   created_at=_iso(row.created_at) or "", started_at=_iso(row.started_at),
                   finished_at=_iso(row.finished_at), error=row.error, output_format=row.output_format,
                   n_cached=row.n_cached, priority=row.priority)


@dataclass
class JobService:
    """The jobs of one store (see the module docstring)."""

    store: JobStore
    root: Path
    max_records: int = 1_000_000

    @classmethod
    def from_settings(cls, settings: Any) -> JobService:
        root = job_dir(settings)
        root.mkdir(parents=True, exist_ok=True)
        return cls(JobStore(store_url(settings)), root, settings.max_job_records)

    def close(self) -> None:
        self.store.close()

    def submit(self, owner: str, request: JobRequest, upload: Path | None = None,
               upload_name: str | None = None) -> JobView:
        """Queue a job over `request.records` or the uploaded file (moved into the job's folder).

        Raises:
            UnknownModelError / UnsupportedVerbError: (404) no such model, or it lacks the verb.
            InvalidInputError: (422) bad options, output format or input.
        """
        spec = get_spec(request.model)
        require_verb(spec, request.verb)
        check_against_spec(spec, request.verb, option_body(request.verb, request.options))
        output_format = check_output_format(request.verb, request.output_format)
        if (request.records is None) == (upload is None):
            raise InvalidInputError("give the input as records or as an uploaded file (one of the two)")
        job_id = uuid.uuid4().hex
        workdir = self.root / job_id
        if upload is not None:
            input_format = input_format_of(upload_name or upload.name)
        else:
            input_format = "csv"
        files = JobFiles(workdir, input_format, output_format, request.verb)
        try:
            workdir.mkdir(parents=True)
            if upload is not None:
                if (upload_name or upload.name).lower().endswith(".gz"):
                    raise InvalidInputError("upload the file uncompressed (HTTP compresses it on the wire)")
                shutil.move(str(upload), files.input)
                n_total = self._count(files.input, input_format, spec.input_kind)
            else:
                records = self._records(request)
                write_inline_input(files.input, records)
                n_total = len(records)
            if n_total == 0:
                raise InvalidInputError("the input holds no records")
            if n_total > self.max_records:
                raise InvalidInputError(f"{n_total} records is more than this server's {self.max_records} per job "
                                        "(setting max_job_records)")
            row = self.store.create(id=job_id, owner=owner, verb=request.verb, model=request.model,
                                    options=request.options, output_format=output_format, input_format=input_format,
                                    dedup=request.dedup, priority=request.priority, n_total=n_total,
                                    workdir=str(workdir))
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return view_of(row)

    @staticmethod
    def _records(request: JobRequest) -> list[Record]:
        assert request.records is not None
        items = [Record(r.id if r.id is not None else str(i), r.sequence, i) for i, r in enumerate(request.records)]
        return as_records(items)  # duplicate ids: InvalidInputError naming them

    @staticmethod
    def _count(path: Path, input_format: str, kind: str) -> int:
        from bionemo_lite.io import InputFile

        source = InputFile(path, format=input_format, kind=kind)  # type: ignore[arg-type]
        next(iter(source.items()), None)  # a wrong header or format fails the submission, not the job
        return source.count()

    def _row(self, owner: str, job_id: str) -> JobRow:
        row = self.store.get(job_id)
        if row is None or row.owner != owner:
            raise JobNotFoundError(job_id)
        return row

    def get(self, owner: str, job_id: str) -> JobView:
        return view_of(self._row(owner, job_id))

    def list(self, owner: str, limit: int = 50, offset: int = 0) -> list[JobView]:
        return [view_of(r) for r in self.store.list(owner, limit, offset)]

    def cancel(self, owner: str, job_id: str) -> JobView:
        """Cancel a queued or running job (its worker stops at its next chunk); a finished job is left as is."""
        self._row(owner, job_id)
        self.store.cancel(job_id)
        return self.get(owner, job_id)

    def delete(self, owner: str, job_id: str) -> None:
        """Cancel the job if it runs, then forget it and remove its files."""
        row = self._row(owner, job_id)
        self.store.cancel(job_id)
        self.store.delete(job_id)
        shutil.rmtree(row.workdir, ignore_errors=True)

    def files(self, owner: str, job_id: str) -> JobFiles:
        row = self._row(owner, job_id)
        return JobFiles(Path(row.workdir), row.input_format, row.output_format, row.verb)

    def results_path(self, owner: str, job_id: str) -> Path:
        """The finished output file (fold: the zip of structures and summary).

        Raises:
            JobNotDoneError: (409) the job is not done.
        """
        row = self._row(owner, job_id)
        if row.state != "done":
            raise JobNotDoneError(job_id, row.state)
        return JobFiles(Path(row.workdir), row.input_format, row.output_format, row.verb).results

    def errors_path(self, owner: str, job_id: str) -> Path | None:
        """The CSV (``id``, ``reason``) of the failed records so far, or None when none failed."""
        files = self.files(owner, job_id)
        return files.errors if files.errors.exists() else None

    def read_results(self, owner: str, job_id: str) -> list[dict[str, Any]]:
        """The rows of a finished job's table output (score, generate, predict, fold's summary)."""
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        files = self.files(owner, job_id)
        self.results_path(owner, job_id)
        path = files.output
        table = pq.read_table(path) if path.suffix == ".parquet" else pacsv.read_csv(path)
        return table.to_pylist()
