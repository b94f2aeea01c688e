"""The resumable batch-job loop, independent of the verb being run.

Records are read lazily from a source, validated one by one (a bad record is
reported and left out before any model call), gathered into chunks and handed
to a `JobTask` (which calls the model verb; the model does the length-sorted
token-budget batching inside the chunk). After each chunk the finished records
are committed to the SQLite manifest (``OUTPUT.job.sqlite``), so a killed job
re-run with the same command computes only what is missing. At the end the
output is written atomically from the manifest, in input order, and the
failures go to ``OUTPUT.errors.csv`` (``id``, ``reason``), which exists only
while some record failed.

One job at a time per output: a job holds ``OUTPUT.job.lock`` (`JobLock`)
from start to end, and first removes the temporary files a killed run of it
left. A job that finished with every record marks its output (`mark_finished`):
run again on the same input with the same parameters, it has nothing to do.
A full disk (or quota) stops the job with a `DiskFullError` naming the file;
the manifest keeps what was finished, so the same job run again once there
is space computes only what is missing.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..batching import is_out_of_memory, reporting_progress
from ..errors import DiskFullError, InvalidInputError
from ..io.atomic import disk_full_errno, ensure_free_space, remove_stale_parts, remove_stale_parts_in
from ..records import Record
from ..results import RecordError
from .identity import InputsDigest
from .lock import JobLock, lock_path
from .manifest import FinishedJob, Manifest, finished_job, mark_finished, params_hash, sequence_hash

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 512


@dataclass
class ChunkOutcome:
    """What a task returns for one chunk: payloads by record id, failure reasons by record id."""

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class RecordSource(Protocol):
    """Where a job's records come from (e.g. `bionemo_lite.io.InputFile`)."""

    def items(self) -> Iterator[Record | RecordError]:
        """Records and unreadable records in input order; each call starts over."""
        ...


class JobTask(Protocol):
    """One verb run as a batch job (see `bionemo_lite.jobs.tasks`).

    A task that writes files of its own into a folder while it runs (fold's
    structures) names that folder ``outdir``: the temporary files a killed
    run left there are removed when the job starts again.
    """

    verb: str

    def params(self) -> dict[str, Any]:
        """Everything that changes a record's result (hashed into the manifest key)."""
        ...

    def prepare(self, record: Record) -> Record:
        """Validate and clean one record before it joins a chunk; raise `InvalidInputError` if bad."""
        ...

    def run(self, records: list[Record]) -> ChunkOutcome:
        """Compute a chunk of prepared records."""
        ...

    def encode(self, payload: Any) -> bytes:
        ...

    def decode(self, blob: bytes) -> Any:
        ...

    def write(self, output: Path, done: Iterable[tuple[Record, Any]]) -> int:
        """Write the output atomically from ``(record, payload)`` pairs in input order; return rows written.

        Every pair must be consumed: the job counts them as the records in the output.
        """
        ...


@dataclass(frozen=True)
class ChunkReport:
    """Passed to ``on_chunk_done`` after a chunk is committed."""

    index: int
    n_records: int
    n_ok: int
    n_failed: int


@dataclass
class JobSummary:
    """The outcome of `run_job`.

    Attributes:
        n_ok: records in the output (computed now or resumed from the manifest).
        errors_path: where the failures are written (the file exists only when `n_failed` > 0).
        n_failed: records in the errors file.
        n_skipped_resumed: records found finished in the manifest and not recomputed.
        n_computed: records computed by this run.
        manifest: the manifest path, or None once removed (every record succeeded).
        up_to_date: the same job had finished already (same input, parameters and output):
            nothing was computed or written.
    """

    output: Path
    errors_path: Path
    manifest: Path | None
    n_ok: int
    n_failed: int
    n_skipped_resumed: int
    n_computed: int
    seconds: float
    up_to_date: bool = False

    @property
    def all_failed(self) -> bool:
        """True when there were records and none of them succeeded (the CLI then exits non-zero)."""
        return self.n_ok == 0 and self.n_failed > 0


def default_paths(output: Path) -> tuple[Path, Path]:
    """``OUTPUT.job.sqlite`` and ``OUTPUT.errors.csv`` for an output file."""
    return Path(f"{output}.job.sqlite"), Path(f"{output}.errors.csv")


def failure_reason(exc: BaseException) -> str:
    """The text of the errors file for a failed record."""
    if isinstance(exc, InvalidInputError):
        return f"position {exc.position}: {exc.reason}" if exc.position is not None else exc.reason
    return f"{type(exc).__name__}: {exc}"


def run_job(
    source: RecordSource,
    task: JobTask,
    output: str | Path,
    *,
    params: Mapping[str, Any] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: bool = True,
    on_chunk_done: Callable[[ChunkReport], None] | None = None,
    on_records_done: Callable[[int], None] | None = None,
    manifest_path: str | Path | None = None,
    errors_path: str | Path | None = None,
    keep_manifest: bool = False,
    wait: bool = False,
) -> JobSummary:
    """Run `task` over every record of `source`, resumably, and write `output`.

    Args:
        source: the records (read twice: once to compute, once to write in order).
        task: the verb to run.
        output: the result file (its extension picks the format).
        params: job parameters outside the task (model name, weights, device,
            dtype); together with ``task.params()`` they key the manifest.
        chunk_size: records per model call and per manifest commit.
        progress: show a tqdm bar (records, records/s, time left; only when
            stderr is a terminal).
        on_chunk_done: called after each committed chunk (progress hooks, tests).
        on_records_done: called with a count of records as they finish (computed,
            resumed or failed): within a chunk after each batch the model ran,
            so it moves record by record, not chunk by chunk. The bar follows it.
        manifest_path: default ``OUTPUT.job.sqlite``.
        errors_path: default ``OUTPUT.errors.csv``.
        keep_manifest: keep the manifest even when every record succeeded
            (it is kept anyway while some failed, so a re-run retries only those).
        wait: if another job is writing `output`, wait for it to end instead of
            raising `JobLockedError`.

    Raises:
        InvalidInputError: a problem that is not one record's (e.g. a layer the
            model does not have); nothing is written then.
        JobLockedError: another job is writing `output` (its PID, host, command
            and start time are in the message).
        DiskFullError: a file of the job could not be written (no space, quota,
            file size limit). What was finished is kept in the manifest.
    """
    if chunk_size < 1:
        raise InvalidInputError(f"chunk size must be at least 1, got {chunk_size}")
    output = Path(output)
    default_manifest, default_errors = default_paths(output)
    manifest_path = Path(manifest_path) if manifest_path else default_manifest
    errors_path = Path(errors_path) if errors_path else default_errors
    all_params = {**dict(params or {}), **task.params(), "verb": task.verb}
    started = time.perf_counter()

    with _reporting_full_disk(manifest_path), JobLock(lock_path(manifest_path), output, wait=wait):
        _remove_stale_parts(task, output, errors_path)
        before = _finished_before(source, output, params_hash(all_params))
        if before is not None:
            logger.debug("%s: nothing to do, the same job wrote its %d records at %s", output, before.n_records,
                         before.finished_at)
            return JobSummary(output, errors_path, manifest_path if manifest_path.exists() else None,
                              before.n_records, 0, before.n_records, 0, time.perf_counter() - started,
                              up_to_date=True)
        summary, digest = _run_locked(source, task, output, all_params, chunk_size, progress, on_chunk_done,
                                      on_records_done, manifest_path, errors_path, keep_manifest, started)
        if summary.n_failed == 0 and summary.n_ok > 0:  # with failures, the next run retries them
            mark_finished(output, digest, summary.n_ok)
        return summary


_DISK_FULL_ADVICE = {
    errno.ENOSPC: "Free some space there",
    errno.EDQUOT: "Free some of your quota there (or have it raised)",
    errno.EFBIG: "Raise the file size limit (ulimit -f) or use a file system that allows larger files,",
}


@contextlib.contextmanager
def _reporting_full_disk(manifest_path: Path) -> Iterator[None]:
    """A full disk (or quota, or file size limit) as a `DiskFullError` naming the file and what to do."""
    try:
        yield
    except OSError as exc:
        number = disk_full_errno(exc)
        if number is None:
            raise
        what_to_do = _DISK_FULL_ADVICE.get(number, _DISK_FULL_ADVICE[errno.ENOSPC])
        hint = (f"{what_to_do} and run the same command again: the records finished so far are kept in "
                f"{str(manifest_path)!r} and will not be computed again.")
        raise DiskFullError(exc.filename or manifest_path.parent, os.strerror(number), hint) from exc


def _remove_stale_parts(task: JobTask, output: Path, errors_path: Path) -> None:
    """The temporary files a run of this job left when it was killed while writing (see `atomic_path`)."""
    removed = remove_stale_parts(output) + remove_stale_parts(errors_path)
    outdir = getattr(task, "outdir", None)
    if outdir is not None:
        removed += remove_stale_parts_in(outdir)
    if removed:
        logger.warning("removed %d temporary files left by a killed run: %s", len(removed),
                       ", ".join(p.name for p in removed))


def _finished_before(source: RecordSource, output: Path, key: str) -> FinishedJob | None:
    """The `FinishedJob` that wrote `output` as it is now from this very input and parameters, or None."""
    before = finished_job(output)
    if before is None:
        return None
    digest = InputsDigest(key)
    for item in source.items():
        digest.add(item)
    return before if digest.hexdigest() == before.digest else None


def _run_locked(source: RecordSource, task: JobTask, output: Path, all_params: dict[str, Any], chunk_size: int,
                progress: bool, on_chunk_done: Callable[[ChunkReport], None] | None,
                on_records_done: Callable[[int], None] | None, manifest_path: Path, errors_path: Path,
                keep_manifest: bool, started: float) -> tuple[JobSummary, str]:
    """`run_job` once it holds the output's lock and found work to do; also the `InputsDigest` of the run."""
    errors: list[tuple[int, str, str]] = []  # (input index, id, reason)
    skipped = computed = 0
    digest = InputsDigest(params_hash(all_params))

    manifest = Manifest(manifest_path, all_params)
    if manifest.removed_stale:
        logger.info("%s: %d results of a run with other parameters discarded", manifest_path, manifest.removed_stale)
    bar = _progress_bar(source, progress)

    def advance(n: int) -> None:
        if n <= 0:
            return
        bar.update(n)
        if on_records_done is not None:
            on_records_done(n)

    try:
        chunk: list[Record] = []
        shas: dict[str, str] = {}
        chunk_index = 0

        def flush() -> None:
            nonlocal chunk_index, computed
            reported = 0

            def batch_done(n: int) -> None:
                # A record retried alone after a failure must not count twice.
                nonlocal reported
                n = min(n, len(chunk) - reported)
                if n > 0:
                    reported += n
                    advance(n)

            with reporting_progress(batch_done):
                outcome = _run_isolating(task, chunk)
            for rid, payload in outcome.results.items():
                manifest.add(rid, shas[rid], task.encode(payload))
            manifest.commit()
            index = {r.id: r.index for r in chunk}
            errors.extend((index.get(rid, -1), rid, reason) for rid, reason in outcome.errors.items())
            computed += len(outcome.results)
            advance(len(chunk) - reported)  # records of verbs that do not batch through `run_batches`
            report = ChunkReport(chunk_index, len(chunk), len(outcome.results), len(outcome.errors))
            chunk.clear()
            shas.clear()
            chunk_index += 1
            if on_chunk_done is not None:
                on_chunk_done(report)

        for item in source.items():
            digest.add(item)
            if isinstance(item, RecordError):
                errors.append((item.index, item.id, item.reason))
                advance(1)
                continue
            sha = sequence_hash(item.sequence)
            if manifest.is_done(item.id, sha):
                skipped += 1
                advance(1)
                continue
            try:
                prepared = task.prepare(item)
            except InvalidInputError as exc:
                errors.append((item.index, item.id, failure_reason(exc)))
                advance(1)
                continue
            chunk.append(prepared)
            shas[prepared.id] = sha
            if len(chunk) >= chunk_size:
                flush()
        if chunk:
            flush()
        bar.close()

        from ..io.writers import space_needed

        # A full disk found out before the output is written, not after minutes of writing it.
        ensure_free_space(output, space_needed(output, len(manifest), manifest.stored_bytes()))
        # Records, not rows: a generate job writes several rows per record.
        finished = _Counting(_finished(source, manifest, task))
        task.write(output, finished)
        n_ok = finished.count
    finally:
        bar.close()
        manifest.close()

    from ..io.writers import write_errors

    errors.sort(key=lambda e: e[0])  # input order, like the output
    if errors:
        write_errors(errors_path, ((rid, reason) for _, rid, reason in errors))
    else:
        errors_path.unlink(missing_ok=True)  # an earlier run's failures, all resolved now
    kept: Path | None = manifest_path
    if not errors and not keep_manifest:
        manifest_path.unlink(missing_ok=True)  # the output holds everything now
        kept = None
    summary = JobSummary(
        output=output,
        errors_path=errors_path,
        manifest=kept,
        n_ok=n_ok,
        n_failed=len(errors),
        n_skipped_resumed=skipped,
        n_computed=computed,
        seconds=time.perf_counter() - started,
    )
    logger.debug("%s: %d ok (%d resumed), %d failed in %.1f s", output, n_ok, skipped, len(errors), summary.seconds)
    return summary, digest.hexdigest()


def _finished(source: RecordSource, manifest: Manifest, task: JobTask) -> Iterator[tuple[Record, Any]]:
    """Finished records in input order, with their decoded payloads."""
    for item in source.items():
        if isinstance(item, Record):
            blob = manifest.get(item.id, sequence_hash(item.sequence))
            if blob is not None:
                yield item, task.decode(blob)


class _Counting:
    """An iterator that counts what it hands out."""

    def __init__(self, items: Iterator[tuple[Record, Any]]):
        self._items = items
        self.count = 0

    def __iter__(self) -> Iterator[tuple[Record, Any]]:
        return self

    def __next__(self) -> tuple[Record, Any]:
        item = next(self._items)
        self.count += 1
        return item


def _run_isolating(task: JobTask, records: list[Record]) -> ChunkOutcome:
    """Run a chunk; if the model rejects one record, report it and run the rest.

    The up-front validation catches what the core can check; model-specific
    rejections (an unparsable SMILES, a wild-type mismatch) surface here. An
    error naming a record in the chunk removes that record; one naming none of
    them is narrowed down record by record. An error naming no record at all is
    a problem with the job itself and propagates.
    """
    done = ChunkOutcome()
    pending = list(records)
    while pending:
        try:
            outcome = task.run(pending)
        except InvalidInputError as exc:
            if exc.record is None:
                raise
            bad = _named_record(exc.record, pending)
            if bad is not None:
                done.errors[bad.id] = failure_reason(exc)
                pending.remove(bad)
                continue
            _run_one_by_one(task, pending, exc, done)
            break
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            # The verb split its batches already; a whole chunk failing means one record is too big.
            _run_one_by_one(task, pending, exc, done)
            break
        done.results.update(outcome.results)
        done.errors.update(outcome.errors)
        for record in pending:
            if record.id not in outcome.results and record.id not in outcome.errors:
                done.errors[record.id] = "the model returned no result for this record"
        break
    return done


def _run_one_by_one(task: JobTask, pending: list[Record], exc: Exception, done: ChunkOutcome) -> None:
    """Narrow a chunk-wide failure down: each record alone, so only the culprits fail."""
    if len(pending) == 1:
        done.errors[pending[0].id] = failure_reason(exc)
        return
    for record in pending:
        single = _run_isolating(task, [record])
        done.results.update(single.results)
        done.errors.update(single.errors)


def _named_record(which: str | int, pending: list[Record]) -> Record | None:
    # An int is a position in the list the model was given; a str is an id.
    if isinstance(which, int):
        return pending[which] if 0 <= which < len(pending) else None
    return next((r for r in pending if r.id == str(which)), None)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(source: RecordSource, enabled: bool, stream: Any = None) -> Any:
    """A bar of records (with records/s, and the time left when the source can count its records)."""
    stream = stream if stream is not None else sys.stderr
    if not enabled or not stream.isatty():
        return _NoBar()
    from tqdm.auto import tqdm

    count = getattr(source, "count", None)
    total = count() if callable(count) else None
    return tqdm(total=total, unit="rec", dynamic_ncols=True, file=stream, smoothing=0.1)
