"""Batch jobs beyond one machine: Ray Data shards the records, an actor pool runs the model.

    bionemo-lite embed esm2_t33_650M_UR50D proteins.fasta -o emb.parquet --executor ray --ray-address auto

`run_ray_job` keeps every guarantee of `run_job` (and ends by calling it):

1. The records not yet in the job's manifest (``OUTPUT.job.sqlite``, keyed
   exactly as `run_job` keys it) are validated here and become a Ray dataset,
   in blocks of ``chunk_size`` records.
2. ``map_batches`` sends each block to an actor of a pool (``num_actors``
   actors; ``num_gpus`` each, e.g. 1 for one actor per GPU). Each actor builds
   its own task, with its own model instance, from `ModelTaskFactory` (a
   picklable recipe: the model's name and load options and the task's), runs the
   block through the same isolating loop as `run_job`, and writes its results as
   one Parquet part of ``OUTPUT.parts/`` (atomically) before handing them back.
3. The driver commits each returned block to the manifest. A driver killed at
   any point loses nothing that reached a part: the parts are read into the
   manifest when the job starts again, and only the rest is computed.
4. `run_job` then writes the output from the manifest (in input order, as the
   local executor does) and the errors file; with every record in the
   manifest it computes nothing, except the records that failed, which it
   retries once on the driver's own task.

So the output of a Ray job is the output of the local executor, record for
record. The driver holds a task of its own too (for the identity of the
job, the validation of records and the writing of the output).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from ..io.atomic import atomic_path
from ..records import Record
from .lock import JobLock, lock_path
from .manifest import Manifest, sequence_hash
from .runner import (
    DEFAULT_CHUNK_SIZE,
    ChunkReport,
    JobSummary,
    JobTask,
    RecordSource,
    _run_isolating,
    default_paths,
    run_job,
)

logger = logging.getLogger(__name__)

PART_COLUMNS = ("id", "seq_sha256", "payload")


@dataclass(frozen=True)
class ModelTaskFactory:
    """How an actor builds its task: ``task_class(bionemo_lite.load(model, **load), **task_options)``.

    Args:
        task_class: ``"module:Class"`` of the task (e.g. ``"bionemo_lite.jobs.tasks:EmbedTask"``), or of a
            callable ``(model) -> task``.
        model: the registered model name.
        load: keyword arguments of `bionemo_lite.load` (weights, device, dtype, numerics).
        task_options: keyword arguments of the task.
        setup: ``"module:function"`` called first in each actor (e.g. registering a private plugin).
    """

    task_class: str
    model: str
    load: Mapping[str, Any] = field(default_factory=dict)
    task_options: Mapping[str, Any] = field(default_factory=dict)
    setup: str | None = None

    def __call__(self) -> JobTask:
        if self.setup:
            _import(self.setup)()
        import bionemo_lite

        model = bionemo_lite.load(self.model, **dict(self.load))
        return _import(self.task_class)(model, **dict(self.task_options))


def factory_of(task: JobTask, model: Any, setup: str | None = None) -> ModelTaskFactory:
    """The recipe of `task` (a dataclass task of `bionemo_lite.jobs.tasks`) over `model`, loaded the same way
    in each actor: same name, same checkpoint file (on shared storage across nodes), device, dtype, numerics."""
    import dataclasses

    options = {f.name: getattr(task, f.name) for f in dataclasses.fields(task)  # type: ignore[arg-type]
               if f.init and f.name != "model"}
    load = {"weights": str(model.weights_path) if model.weights_path is not None else None,
            "device": model.device, "dtype": getattr(model, "dtype", None), "numerics": model.numerics}
    return ModelTaskFactory(f"{type(task).__module__}:{type(task).__qualname__}", model.name, load, options, setup)


def _import(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class _ChunkActor:
    """A Ray actor: one task (one model instance) for its life; one call per block of records."""

    def __init__(self, factory: Callable[[], JobTask], parts_dir: str):
        self.task = factory()
        self.parts_dir = Path(parts_dir)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        records = [Record(str(rid), str(seq), int(index))
                   for rid, seq, index in zip(batch["id"], batch["sequence"], batch["index"])]
        shas = dict(zip((str(r) for r in batch["id"]), (str(s) for s in batch["seq_sha256"])))
        outcome = _run_isolating(self.task, records)
        ids = list(outcome.results)
        out = {"id": ids, "seq_sha256": [shas[rid] for rid in ids],
               "payload": [self.task.encode(outcome.results[rid]) for rid in ids]}
        if ids:
            _write_part(self.parts_dir, out)
        failed = list(outcome.errors)
        return {"id": ids + failed, "seq_sha256": out["seq_sha256"] + [shas[r] for r in failed],
                "payload": out["payload"] + [b""] * len(failed),
                "error": [""] * len(ids) + [outcome.errors[r] for r in failed]}


def _write_part(parts_dir: Path, columns: dict[str, list[Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    digest = hashlib.sha256("\0".join(f"{i}:{s}" for i, s in zip(columns["id"], columns["seq_sha256"]))
                            .encode("utf-8")).hexdigest()[:24]
    parts_dir.mkdir(parents=True, exist_ok=True)
    path = parts_dir / f"part-{digest}.parquet"
    table = pa.table({"id": pa.array(columns["id"], pa.string()),
                      "seq_sha256": pa.array(columns["seq_sha256"], pa.string()),
                      "payload": pa.array(columns["payload"], pa.binary())})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def parts_dir_of(output: Path) -> Path:
    """``OUTPUT.parts/``: the Parquet parts the actors write."""
    return Path(f"{output}.parts")


def _ingest_parts(parts_dir: Path, manifest: Manifest) -> int:
    """Parts of an earlier (killed) run into the manifest: what an actor finished is never computed again."""
    if not parts_dir.is_dir():
        return 0
    import pyarrow.parquet as pq

    added = 0
    for part in sorted(parts_dir.glob("part-*.parquet")):
        try:
            table = pq.read_table(part)
        except Exception:  # a part is written atomically; anything unreadable is not ours
            logger.warning("skipping unreadable part %s", part)
            continue
        for rid, sha, payload in zip(*(table.column(c).to_pylist() for c in PART_COLUMNS)):
            if not manifest.is_done(rid, sha):
                manifest.add(rid, sha, payload)
                added += 1
    manifest.commit()
    return added


def run_ray_job(
    source: RecordSource,
    task: JobTask,
    output: str | Path,
    *,
    factory: Callable[[], JobTask],
    params: Mapping[str, Any] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    num_actors: int = 2,
    num_gpus: float = 0.0,
    num_cpus: float = 1.0,
    address: str | None = None,
    progress: bool = True,
    on_chunk_done: Callable[[ChunkReport], None] | None = None,
    on_records_done: Callable[[int], None] | None = None,
    manifest_path: str | Path | None = None,
    errors_path: str | Path | None = None,
    keep_manifest: bool = False,
    wait: bool = False,
) -> JobSummary:
    """`run_job` with the model calls on a Ray actor pool (see the module docstring).

    Args:
        task: the driver's task (identity, validation, writing); `factory` builds the actors' own.
        num_actors: actors in the pool.
        num_gpus: GPUs per actor (1: one actor per GPU); num_cpus: CPUs per actor.
        address: the Ray cluster (``auto``, ``ray://head:10001``); None starts or joins a local one.
        The other arguments are `run_job`'s.
    """
    import ray

    if chunk_size < 1:
        raise InvalidInputError(f"chunk size must be at least 1, got {chunk_size}")
    output = Path(output)
    manifest_path = Path(manifest_path) if manifest_path else default_paths(output)[0]
    all_params = {**dict(params or {}), **task.params(), "verb": task.verb}
    parts = parts_dir_of(output)
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)

    with JobLock(lock_path(manifest_path), output, wait=wait):
        manifest = Manifest(manifest_path, all_params)
        try:
            resumed = _ingest_parts(parts, manifest)
            if resumed:
                logger.info("%s: %d records taken from the parts of an earlier run", output, resumed)
            pending: list[dict[str, Any]] = []
            for item in source.items():
                if not isinstance(item, Record):
                    continue
                sha = sequence_hash(item.sequence)
                if manifest.is_done(item.id, sha):
                    continue
                try:
                    prepared = task.prepare(item)
                except InvalidInputError:
                    continue  # reported by run_job below, without a model call
                pending.append({"id": prepared.id, "sequence": prepared.sequence, "index": prepared.index,
                                "seq_sha256": sha})
            computed = 0
            if pending:
                blocks = max(1, min(len(pending) // chunk_size + 1, 1000))
                dataset = ray.data.from_items(pending, override_num_blocks=blocks)
                results = dataset.map_batches(
                    _ChunkActor, fn_constructor_args=(factory, str(parts)), batch_size=chunk_size,
                    batch_format="numpy", concurrency=num_actors, num_gpus=num_gpus or None, num_cpus=num_cpus,
                    zero_copy_batch=False)
                index = 0
                for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
                    ok = failed = 0
                    for rid, sha, payload, error in zip(batch["id"], batch["seq_sha256"], batch["payload"],
                                                        batch["error"]):
                        if error:
                            failed += 1  # retried once by run_job below, which reports it
                            continue
                        manifest.add(str(rid), str(sha), bytes(payload))
                        ok += 1
                    manifest.commit()
                    computed += ok
                    if on_records_done is not None:
                        on_records_done(ok + failed)
                    if on_chunk_done is not None:
                        on_chunk_done(ChunkReport(index, ok + failed, ok, failed))
                    index += 1
        finally:
            manifest.close()

    summary = run_job(source, task, output, params=params, chunk_size=chunk_size, progress=progress,
                      manifest_path=manifest_path, errors_path=errors_path, keep_manifest=keep_manifest, wait=wait)
    shutil.rmtree(parts, ignore_errors=True)  # all in the manifest (or the output) now
    if not summary.up_to_date:  # what the actors computed now is not "resumed"
        summary.n_computed += computed
        summary.n_skipped_resumed = max(0, summary.n_skipped_resumed - computed)
    return summary
