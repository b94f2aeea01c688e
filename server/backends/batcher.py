"""Micro-batching of ``embed`` requests: concurrent requests become one model call.

Requests for the same model with the same options (layers, pooling, truncate)
that arrive within ``batch_window_ms`` of the first one join a group; the
group stays open until the model is free (so requests that queue behind a
running call join the next one), or until it holds ``max_batch_records``
records. The group's records are renamed ``"<request>/<id>"`` (ids may collide
across requests), embedded in one call, and the result is split back per
request with the user's ids, ``truncated`` and ``errors``. The core's embed is
padding-safe, so answers do not depend on what a record was batched with.

If the merged call raises `InvalidInputError`, the group's requests are run
one by one so only the request at fault gets the error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bionemo_lite.errors import InvalidInputError
from bionemo_lite.records import Record
from bionemo_lite.results import Embeddings, RecordError

logger = logging.getLogger(__name__)

# One request's answer, or the exception that request must raise.
Outcome = Any | BaseException
GroupResult = tuple[list[Outcome], int]
# (model, the records of every request of a group) -> (per request outcome, model calls made); worker thread.
GroupRunner = Callable[[Any, list[list[Record]]], GroupResult]
# Runs a job with the model in a worker thread, calling `on_turn` on the event loop just before it starts.
ModelRunner = Callable[[Callable[[Any], GroupResult], Callable[[], None]], Awaitable[GroupResult]]


def merge_records(requests: Sequence[Sequence[Record]]) -> list[Record]:
    """All requests' records in order, with ids made unique as ``"<request>/<id>"``."""
    merged = [Record(f"{n}/{r.id}", r.sequence) for n, records in enumerate(requests) for r in records]
    return [replace(r, index=i) for i, r in enumerate(merged)]


def split_embeddings(result: Embeddings, requests: Sequence[Sequence[Record]]) -> list[Embeddings]:
    """Cut the result of a call on `merge_records(requests)` back into one `Embeddings` per request.

    Ids, ``truncated`` and ``errors`` (id and index) are the user's again.
    """
    owner: dict[str, tuple[int, Record]] = {}
    for n, records in enumerate(requests):
        for r in records:
            owner[f"{n}/{r.id}"] = (n, r)
    rows: list[list[int]] = [[] for _ in requests]
    for row, merged_id in enumerate(result.ids):
        rows[owner[merged_id][0]].append(row)
    out = []
    for n, picked in enumerate(rows):
        by_layer: dict[int, Any] = {}
        for layer, arrays in result.by_layer.items():
            if isinstance(arrays, np.ndarray):
                by_layer[layer] = arrays[np.asarray(picked, dtype=np.intp)]
            else:
                by_layer[layer] = [arrays[i] for i in picked]
        errors = [RecordError(owner[e.id][1].id, owner[e.id][1].index, e.reason, e.position)
                  for e in result.errors if owner[e.id][0] == n]
        out.append(Embeddings(
            model=result.model,
            ids=[owner[result.ids[i]][1].id for i in picked],
            lengths=[result.lengths[i] for i in picked],
            layers=result.layers,
            pooling=result.pooling,
            by_layer=by_layer,
            truncated=[owner[t][1].id for t in result.truncated if owner[t][0] == n],
            errors=errors,
        ))
    return out


def run_group(embed: Callable[[list[Record]], Embeddings], to_json: Callable[[Embeddings], Any],
              requests: list[list[Record]]) -> GroupResult:
    """Embed every request of a group in one call (worker thread); see the module docstring.

    Returns:
        Per request its JSON answer or its exception, and the number of model calls made.
    """
    if len(requests) > 1:
        try:
            merged = embed(merge_records(requests))
        except InvalidInputError as exc:
            logger.debug("merged embed of %d requests refused (%s); running them one by one", len(requests), exc)
        else:
            return [to_json(part) for part in split_embeddings(merged, requests)], 1
    outcomes: list[Outcome] = []
    for records in requests:
        try:
            outcomes.append(to_json(embed(records)))
        except Exception as exc:  # this request's own error (422, or a bug -> 500), not its neighbours'
            outcomes.append(exc)
    return outcomes, len(requests)


@dataclass
class _Group:
    """Requests waiting to be embedded together."""

    requests: list[list[Record]] = field(default_factory=list)
    futures: list[asyncio.Future] = field(default_factory=list)
    records: int = 0


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
    """

    def __init__(self, window_s: float, max_records: int):
        self._window_s = window_s
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
        # shield: a client that goes away must not cancel its neighbours' call.
        return await asyncio.shield(future)

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
                                              lambda: self._close(full_key, group))
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

