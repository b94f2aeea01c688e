"""The BioNeMo service's tasks (correlation ids) over the service's jobs.

The client's ``*_sync`` methods are its ``*_async`` ones plus polling (``GET
/task/{id}`` every 5 s until DONE / CANCEL / ERROR), so every generate and fold
request is a task. A task is a job of the durable job store
(``app.state.jobs``, `JobTasks`) when the service has one; without it, or for
work a job cannot carry (a fold's MSA), the task runs in this process and
lives in memory (`LocalTasks`). Either way a
submission waits up to `INLINE_WAIT_S` for its answer before replying with the
correlation id, so a short request is DONE at the client's first poll instead
of five seconds later.

States, as the client reads them: queued -> SUBMITTED, running -> PROCESSING,
done -> DONE, failed -> ERROR, cancelled -> CANCEL (CREATED is never reported:
a task is queued when its id is given out).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from bionemo_lite.errors import BionemoLiteError

INLINE_WAIT_S = 5.0
"""How long a submission waits for its task before answering with the correlation id alone."""
MAX_LOCAL_TASKS = 1000
"""Finished in-memory tasks kept per owner (oldest dropped first)."""

STATES = {"queued": "SUBMITTED", "running": "PROCESSING", "done": "DONE", "failed": "ERROR", "cancelled": "CANCEL"}


class TaskNotFoundError(LookupError):
    """No task of this id for this owner."""


@dataclass
class Submission:
    """One task: how to run it in this process (`run`, the BioNeMo answer as a dict), and the same
    work as a job of the job store (`verb`, `variant`, `options`, `records`) with `answer` turning
    the job's results (rows, or a file) back into the BioNeMo answer."""

    model: str  # the BioNeMo model name (the client picks its result parser by it)
    run: Callable[[], Awaitable[dict[str, Any]]]
    verb: str
    variant: str
    options: dict[str, Any]
    records: list[dict[str, Any]]
    answer: Callable[[Any], dict[str, Any]]
    results: str = "rows"  # what `answer` reads of a finished job: "rows" (read_results) or "file" (results_path)
    in_process: bool = False  # the job store cannot carry it (e.g. a fold's MSA): run it as a `LocalTasks` task


@dataclass
class TaskView:
    id: str
    owner: str
    model: str
    state: str  # queued | running | done | failed | cancelled
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    progress: float = 0.0
    error: str | None = None
    response: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The task as the client's ``fetch_task_status`` / ``_wait_for_response`` read it:
        ``control_info.status`` and ``response`` (JSON text; on ERROR it carries the reason)."""
        status = STATES[self.state]
        if self.response is not None:
            response = json.dumps(self.response)
        elif self.error is not None:
            response = json.dumps({"error": "task_failed" if self.state == "failed" else "task_cancelled",
                                   "detail": self.error})
        else:
            response = None
        return {
            "control_info": {"correlation_id": self.id, "status": status, "model": self.model, "state": self.state,
                             "progress": self.progress, "created_at": self.created_at,
                             "started_at": self.started_at, "finished_at": self.finished_at},
            "correlation_id": self.id, "model": self.model, "status": status, "response": response,
        }


class TaskBackend(Protocol):
    async def submit(self, owner: str, submission: Submission) -> TaskView: ...
    async def get(self, owner: str, task_id: str) -> TaskView: ...
    async def list(self, owner: str, limit: int) -> list[TaskView]: ...
    async def cancel(self, owner: str, task_id: str) -> TaskView: ...
    async def delete(self, owner: str, task_id: str) -> None: ...


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")  # as the job store writes them


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, BionemoLiteError) else f"{type(exc).__name__}: the task failed (server log)"


@dataclass
class _Local:
    view: TaskView
    task: asyncio.Task[Any] | None = field(default=None, repr=False)


class LocalTasks:
    """Tasks run in this process, kept in memory (a restart forgets them): the fallback of a
    service without a job store."""

    def __init__(self) -> None:
        self._tasks: dict[str, OrderedDict[str, _Local]] = {}

    def _of(self, owner: str) -> OrderedDict[str, _Local]:
        return self._tasks.setdefault(owner, OrderedDict())

    def _find(self, owner: str, task_id: str) -> _Local:
        found = self._of(owner).get(task_id)
        if found is None:
            raise TaskNotFoundError(task_id)
        return found

    async def submit(self, owner: str, submission: Submission) -> TaskView:
        view = TaskView(str(uuid.uuid4()), owner, submission.model, "queued", _now())
        local = _Local(view)
        tasks = self._of(owner)
        tasks[view.id] = local
        self._forget_old(tasks)

        async def work() -> None:
            local.view.state, local.view.started_at = "running", _now()
            try:
                local.view.response = await submission.run()
                local.view.state, local.view.progress = "done", 1.0
            except asyncio.CancelledError:
                local.view.state, local.view.error = "cancelled", "the task was cancelled"
            except Exception as exc:  # a task's failure is its ERROR state, never the server's
                local.view.state, local.view.error = "failed", _reason(exc)
            local.view.finished_at = _now()

        # Its own task: the client hanging up on the submission does not stop the work.
        local.task = asyncio.get_running_loop().create_task(work())
        await asyncio.wait({local.task}, timeout=INLINE_WAIT_S)
        return replace(local.view)

    def _forget_old(self, tasks: OrderedDict[str, _Local]) -> None:
        finished = [k for k, t in tasks.items() if t.task is not None and t.task.done()]
        for key in finished[: max(0, len(tasks) - MAX_LOCAL_TASKS)]:
            del tasks[key]

    async def get(self, owner: str, task_id: str) -> TaskView:
        return replace(self._find(owner, task_id).view)

    async def list(self, owner: str, limit: int) -> list[TaskView]:
        return [replace(t.view) for t in reversed(self._of(owner).values())][:limit]

    async def cancel(self, owner: str, task_id: str) -> TaskView:
        local = self._find(owner, task_id)
        if local.task is not None and not local.task.done():
            local.task.cancel()  # the provider cancels the model call's token: it stops at a batch boundary
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({local.task}, timeout=5.0)
        return replace(local.view)

    async def delete(self, owner: str, task_id: str) -> None:
        await self.cancel(owner, task_id)
        self._of(owner).pop(task_id, None)


class JobTasks:
    """Tasks as jobs of the service's durable job store (`server/jobs/service.py`'s `JobService`)."""

    def __init__(self, jobs: Any, workers: Any = None) -> None:
        self.jobs = jobs
        self.workers = workers  # the service's worker pool (`server/jobs/pool.py`), started on first use
        # The BioNeMo model name and answer of each job submitted here (a job is a verb over records;
        # the BioNeMo shape of its answer is known to the route that submitted it).
        self._answers: dict[str, Submission] = {}
        self.local = LocalTasks()  # submissions the job store cannot carry

    def _view(self, job: Any) -> TaskView:
        submission = self._answers.get(job.id)
        model = submission.model if submission is not None else job.model
        return TaskView(job.id, job.owner, model, job.state, job.created_at, job.started_at, job.finished_at,
                        float(job.progress or 0.0), job.error)

    def _call(self, method: str, *args: Any) -> Awaitable[Any]:
        # JobService may be sync or async: either way, off the event loop when it is sync (SQLite I/O).
        fn = getattr(self.jobs, method)
        if asyncio.iscoroutinefunction(fn):
            return fn(*args)
        return asyncio.to_thread(fn, *args)

    async def submit(self, owner: str, submission: Submission) -> TaskView:
        from ...jobs.schemas import JobRequest  # the job store's package (issue 12)

        if submission.in_process:
            return await self.local.submit(owner, submission)
        request = JobRequest(verb=submission.verb, model=submission.variant, options=submission.options,
                             records=submission.records)
        job = await self._call("submit", owner, request)
        if self.workers is not None:
            self.workers.ensure_started()  # on the event loop's thread, as POST /v1/jobs does
        self._answers[job.id] = submission
        deadline = time.monotonic() + INLINE_WAIT_S
        while job.state in ("queued", "running") and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            job = await self._call("get", owner, job.id)
        return await self._with_answer(owner, job)

    async def _with_answer(self, owner: str, job: Any) -> TaskView:
        view = self._view(job)
        if job.state == "done":
            submission = self._answers.get(job.id)
            if submission is None:  # submitted before this process started: its BioNeMo shape is unknown here
                view.state, view.error = "failed", ("this server process did not submit the task: its results "
                                                    f"are at GET /v1/jobs/{job.id}/results")
                return view
            results: Any = (await self._call("read_results", owner, job.id) if submission.results == "rows"
                            else Path(await self._call("results_path", owner, job.id)))
            view.response = await asyncio.to_thread(submission.answer, results)
        return view

    async def get(self, owner: str, task_id: str) -> TaskView:
        with contextlib.suppress(TaskNotFoundError):
            return await self.local.get(owner, task_id)
        return await self._with_answer(owner, await self._job(owner, task_id))

    async def _job(self, owner: str, task_id: str) -> Any:
        from ...jobs.service import JobNotFoundError

        try:
            return await self._call("get", owner, task_id)
        except JobNotFoundError:
            raise TaskNotFoundError(task_id) from None

    async def list(self, owner: str, limit: int) -> list[TaskView]:
        views = [self._view(job) for job in await self._call("list", owner, limit, 0)]
        views += await self.local.list(owner, limit)
        return sorted(views, key=lambda v: v.created_at, reverse=True)[:limit]

    async def cancel(self, owner: str, task_id: str) -> TaskView:
        from ...jobs.service import JobNotFoundError

        with contextlib.suppress(TaskNotFoundError):
            return await self.local.cancel(owner, task_id)
        try:
            return self._view(await self._call("cancel", owner, task_id))
        except JobNotFoundError:
            raise TaskNotFoundError(task_id) from None

    async def delete(self, owner: str, task_id: str) -> None:
        from ...jobs.service import JobNotFoundError

        with contextlib.suppress(TaskNotFoundError):
            await self.local.get(owner, task_id)
            return await self.local.delete(owner, task_id)
        try:
            await self._call("delete", owner, task_id)
        except JobNotFoundError:
            raise TaskNotFoundError(task_id) from None
        self._answers.pop(task_id, None)


def task_backend(app_state: Any) -> TaskBackend:
    """The job store's tasks when the service has one (``app.state.jobs``), else in-process ones."""
    backend = getattr(app_state, "bionemo_tasks", None)
    if backend is None:
        jobs = getattr(app_state, "jobs", None)
        backend = JobTasks(jobs, getattr(app_state, "job_workers", None)) if jobs is not None else LocalTasks()
        app_state.bionemo_tasks = backend
    return backend
