"""Micro-batching of ``embed`` requests: concurrent requests become one model call.

Requests for the same model with the same options (layers, pooling, truncate)
that arrive within ``batch_window_ms`` of the first one join a group; the
group stays open until the model is free (so requests that queue behind a
running call join the next one), or until it holds ``max_batch_records``
records. The group is embedded in one call and split back per request by
`bionemo_lite.merging` (the helper Triton's ``model.py`` uses too): a record the
model refuses fails only its own request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from bionemo_lite.cancellation import CancelToken
from bionemo_lite.merging import run_merged
from bionemo_lite.records import Record
from bionemo_lite.results import Embeddings

from .. import metrics

logger = logging.getLogger(__name__)

# One request's answer, or the exception that request must raise.
Outcome = Any | BaseException
GroupResult = tuple[list[Outcome], int]
# (model, the records of every request of a group) -> (per request outcome, model calls made); worker thread.
GroupRunner = Callable[[Any, list[list[Record]]], GroupResult]
# Runs a job with the model in a worker thread, calling `on_turn` on the event loop just before it starts;
# the token cancels the job (when every request of the group has gone).
ModelRunner = Callable[[Callable[[Any], GroupResult], Callable[[], None], CancelToken], Awaitable[GroupResult]]


def run_group(embed: Callable[[list[Record]], Embeddings], to_json: Callable[[Embeddings], Any],
              requests: list[list[Record]]) -> GroupResult:
    """Embed every request of a group in one call (worker thread), each answer as JSON.

    Returns:
        Per request its JSON answer or its exception, and the number of model calls made.
    """
    outcomes, calls = run_merged(embed, requests)
    answers: list[Outcome] = []
    for outcome in outcomes:
        try:
            answers.append(outcome if isinstance(outcome, BaseException) else to_json(outcome))
        except Exception as exc:  # this request's own failure (a bug -> 500), not its neighbours'
            answers.append(exc)
    return answers, calls


@dataclass
class _Group:
    """Requests waiting to be embedded together."""

    requests: list[list[Record]] = field(default_factory=list)
    futures: list[asyncio.Future] = field(default_factory=list)
    records: int = 0
    token: CancelToken = field(default_factory=CancelToken)


@dataclass
class BatchCounters:
    """Model calls made for embed requests, and the requests they answered."""

    calls: int = 0
    requests: int = 0


class EmbedBatcher:
    """Groups concurrent embed requests per (model, options) key; one instance per backend.

    Args:
        window_s: how long a group waits for more requests after its first (0: no merging).
        max_records: most records in one merged call (a larger single request still runs alone).
        app_metrics: the app's metrics, told the size of each merged call (None: none kept).
    """

    def __init__(self, window_s: float, max_records: int, app_metrics: metrics.ServiceMetrics | None = None):
        self._window_s = window_s
        self._metrics = app_metrics
        self._max_records = max_records
        self._open: dict[Hashable, _Group] = {}
        self._counters: dict[str, BatchCounters] = {}
        self._tasks: set[asyncio.Task] = set()

    def counters(self, name: str) -> BatchCounters:
        return self._counters.setdefault(name, BatchCounters())

    async def submit(self, name: str, key: Hashable, records: list[Record],
                     runner: GroupRunner, run_model: ModelRunner) -> Any:
        """Embed `records` with the others of its group; returns this request's answer.

        `runner` and `run_model` are taken from the group's first request
        (all requests of a group share the model and the options, which `key` stands for).
        """
        full_key = (name, key)
        group = self._open.get(full_key)
        if group is None or group.records + len(records) > self._max_records:
            if group is not None:
                self._close(full_key, group)
            group = _Group()
            self._open[full_key] = group
            task = asyncio.ensure_future(self._flush(name, full_key, group, runner, run_model))
            self._tasks.add(task)  # a strong reference until done
            task.add_done_callback(self._tasks.discard)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        group.requests.append(records)
        group.futures.append(future)
        group.records += len(records)
        if self._window_s <= 0 or group.records >= self._max_records:
            self._close(full_key, group)
        # shield: a client that goes away must not cancel its neighbours' call...
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.cancel()
            if all(f.cancelled() for f in group.futures):  # ...but a call nobody waits for stops
                self._close(full_key, group)
                group.token.cancel("every request of the merged embed call was cancelled")
            raise

    def _close(self, full_key: Hashable, group: _Group) -> None:
        if self._open.get(full_key) is group:
            del self._open[full_key]

    async def _flush(self, name: str, full_key: Hashable, group: _Group, runner: GroupRunner,
                     run_model: ModelRunner) -> None:
        try:
            if self._window_s > 0:
                await asyncio.sleep(self._window_s)
            # Closed on the event loop when the model is ours, so no request joins while it runs.
            outcomes, calls = await run_model(lambda model: runner(model, group.requests),
                                              lambda: self._close(full_key, group), group.token)
        except BaseException as exc:  # loading failed, a bug, or shutdown: every request of the group gets it
            self._close(full_key, group)
            for future in group.futures:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        metrics.observe_batch(self._metrics, name, len(group.requests), group.records)
        counters = self.counters(name)
        counters.calls += calls
        counters.requests += len(group.requests)
        for future, outcome in zip(group.futures, outcomes):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

