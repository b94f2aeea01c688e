"""A job worker: a process of its own that takes jobs from the store and runs them with `run_job`.

    python -m bionemo_lite.server.jobs.worker --settings settings.json --name w1

The service starts ``job_workers`` of them (`server.jobs.pool`); more can run on
other machines against the same PostgreSQL store and shared ``job_dir``. Each
holds at most one loaded model per name (one model instance per worker). A job
runs through the CLI's resumable `run_job`: its manifest sits next to its
output, so a worker killed with -9 loses at most the chunk it was computing, and
the worker that takes the job next resumes from the manifest.

Fairness: a worker runs a job for at most ``job_slice_s`` seconds while other
jobs wait, then puts it back (at a chunk boundary, after the manifest commit)
and takes the next one by the rule in `pick_fair`: the highest priority, then
the owner served least recently, then the oldest job of that owner.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .store import JobRow, JobStore, utcnow

logger = logging.getLogger("bionemo_lite.server.jobs.worker")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class _Stop(Exception):
    """The job was cancelled or deleted, or taken by another worker: stop at this chunk boundary."""


class _Yield(Exception):
    """The job's slice is over and other jobs wait: back to the queue."""


def pick_fair(candidates: Sequence[JobRow]) -> JobRow | None:
    """The next job: highest priority; then the owner served least recently; then that owner's oldest job."""
    if not candidates:
        return None
    top = max(c.priority for c in candidates)
    pool = [c for c in candidates if c.priority == top]
    served: dict[str, datetime] = {}
    for c in pool:
        last = c.last_run_at or _EPOCH
        served[c.owner] = max(served.get(c.owner, _EPOCH), last)
    owner = min(served, key=lambda o: (served[o], min(c.created_at for c in pool if c.owner == o)))
    return min((c for c in pool if c.owner == owner), key=lambda c: (c.created_at, c.id))


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the service that started it dies (even by kill -9)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _call(spec: str) -> None:
    module, _, function = spec.partition(":")
    getattr(importlib.import_module(module), function)()


class Worker:
    """Takes jobs from `store` and runs them; `run_forever` until stopped."""

    def __init__(self, settings: Any, name: str):
        from .service import job_dir, store_url

        self.settings = settings
        self.name = name
        self.store = JobStore(store_url(settings))
        self.job_dir = job_dir(settings)
        self.models: dict[str, Any] = {}
        self.stopping = False

    # ---- models: one instance per worker

    def model(self, name: str) -> Any:
        if name not in self.models:
            import bionemo_lite

            s = self.settings
            if len(self.models) >= max(1, s.job_worker_models):  # a worker holds a bounded number of models
                self.models.pop(next(iter(self.models)))
            self.models[name] = bionemo_lite.load(name, weights=s.weights.get(name), device=s.device, dtype=s.dtype,
                                                  numerics=s.numerics)
        return self.models[name]

    # ---- the loop

    def run_forever(self, parent: int | None = None) -> None:
        while not self.stopping:
            if parent is not None and os.getppid() != parent:
                return  # the service is gone (no PDEATHSIG on this system)
            job = self.store.claim(self.name, self.settings.job_lease_s, pick_fair)
            if job is None:
                time.sleep(self.settings.job_poll_s)
                continue
            self.run(job)

    def run(self, job: JobRow) -> None:
        """Run (a slice of) one claimed job, renewing its lease meanwhile."""
        stop = threading.Event()
        lost = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(max(0.05, self.settings.job_lease_s / 3)):
                if not self.store.renew(job.id, self.name, self.settings.job_lease_s):
                    lost.set()
                    return

        beat = threading.Thread(target=heartbeat, name=f"lease-{job.id}", daemon=True)
        beat.start()
        try:
            self._run(job, lost)
        except _Stop:
            logger.info("job %s stopped (cancelled, deleted or taken over)", job.id)
            if self.store.get(job.id) is None:
                shutil.rmtree(job.workdir, ignore_errors=True)
        except _Yield:
            self.store.release(job.id, self.name)
        except Exception as exc:
            from bionemo_lite.errors import BionemoLiteError

            if isinstance(exc, BionemoLiteError):
                message = str(exc)
            else:
                logger.error("job %s failed:\n%s", job.id, traceback.format_exc())
                message = f"{type(exc).__name__}: {exc}"
            self.store.update(job.id, worker=self.name, state="failed", error=message, finished_at=utcnow(),
                              lease_until=None)
        finally:
            stop.set()
            beat.join()

    def _run(self, job: JobRow, lost: threading.Event) -> None:
        from bionemo_lite.io import InputFile
        from bionemo_lite.jobs import job_identity, params_hash, run_job
        from bionemo_lite.registry import get_spec

        from .dedup import prefill, remember
        from .execute import JobFiles, build_task, zip_fold_results

        files = JobFiles(Path(job.workdir), job.input_format, job.output_format, job.verb)
        spec = get_spec(job.model)
        model = self.model(job.model)
        task = build_task(job.verb, model, job.options, files)
        source = InputFile(files.input, format=job.input_format, kind=spec.input_kind)  # type: ignore[arg-type]
        params = job_identity(model)
        all_params = {**params, **task.params(), "verb": task.verb}
        key = params_hash(all_params)
        dedup = job.dedup and job.verb != "fold"  # a fold's payload points at its own structure files
        n_cached = prefill(self.store, key, source, files.manifest, all_params) if dedup else 0
        if n_cached:
            self.store.update(job.id, worker=self.name, n_cached=job.n_cached + n_cached)
        started = time.monotonic()
        processed = 0
        last_update = 0.0

        def records_done(n: int) -> None:
            nonlocal processed
            processed += n

        def chunk_done(_report: Any) -> None:
            nonlocal last_update
            if lost.is_set():
                raise _Stop()
            if self.stopping:  # SIGTERM: hand the job back now rather than when the lease runs out
                raise _Yield()
            now = time.monotonic()
            if now - last_update > 0.2:
                self.store.update(job.id, worker=self.name, n_done=min(processed, job.n_total))
                last_update = now
            if now - started > self.settings.job_slice_s and self._others_wait(job.id):
                raise _Yield()

        common = {"params": params, "chunk_size": self.settings.job_chunk_size, "progress": False,
                  "on_chunk_done": chunk_done, "on_records_done": records_done, "keep_manifest": True, "wait": True}
        if self.settings.job_executor == "ray":  # the model calls on a Ray actor pool (same manifest, same output)
            from bionemo_lite.jobs.ray_executor import factory_of, run_ray_job

            s = self.settings
            summary = run_ray_job(source, task, files.output, factory=factory_of(task, model, s.job_worker_init),
                                  num_actors=s.ray_actors, num_gpus=s.ray_gpus_per_actor, address=s.ray_address,
                                  **common)
        else:
            summary = run_job(source, task, files.output, **common)
        if lost.is_set():
            raise _Stop()
        if job.verb == "fold":
            zip_fold_results(files)
        if dedup:
            remember(self.store, key, files.manifest, all_params)
        if summary.n_failed == 0:
            files.manifest.unlink(missing_ok=True)
        self.store.update(job.id, worker=self.name, state="done", n_done=summary.n_ok, n_failed=summary.n_failed,
                          finished_at=utcnow(), lease_until=None)

    def _others_wait(self, job_id: str) -> bool:
        return any(c.id != job_id for c in self.store.claimable(utcnow()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bionemo_lite.server.jobs.worker")
    parser.add_argument("--settings", type=Path, help="The service's settings as JSON (else BIONEMO_LITE_*).")
    parser.add_argument("--name", default=f"worker-{os.getpid()}")
    parser.add_argument("--parent", type=int, default=None, help="Exit when this process is gone.")
    args = parser.parse_args(argv)
    if args.parent is not None:
        _die_with_parent()
        if os.getppid() != args.parent:
            return
    from ..settings import Settings

    settings = Settings(**json.loads(args.settings.read_text())) if args.settings else Settings()
    logging.basicConfig(level=settings.log_level.upper() if settings.log_level != "trace" else "DEBUG",
                        format="%(asctime)s worker %(process)d %(levelname)s %(name)s: %(message)s")
    if settings.torch_threads:
        try:
            import torch

            torch.set_num_threads(settings.torch_threads)
        except ImportError:
            pass
    if settings.job_worker_init:
        _call(settings.job_worker_init)  # e.g. register private plugins (or the tests' toy models)
    worker = Worker(settings, args.name)

    def stop(signum: int, frame: object) -> None:
        worker.stopping = True

    signal.signal(signal.SIGTERM, stop)
    worker.run_forever(args.parent)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
