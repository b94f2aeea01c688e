"""Several embed requests as one model call, and the answer cut back per request.

The front doors that batch requests (the HTTP service's embed batcher, Triton's
``model.py`` over a dynamic batch) merge the records of requests that ask for
the same layers, pooling and length policy, run one ``embed`` and split the
result:

    >>> outcomes, calls = run_merged(lambda records: model.embed(records), [[r1, r2], [r3]])

Record ids may collide across requests, so the merged records are named
``"<request>/<id>"``; the split gives each request its own ids, ``truncated`` and
``errors`` back. A record the model refuses (an `InvalidInputError` on the
merged call) must fail only its own request, so the requests are then run one by
one. The core's embed is padding-safe: an answer does not depend on what its
records were batched with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .errors import InvalidInputError
from .records import Record
from .results import Embeddings, RecordError

Outcome = Embeddings | BaseException
"""One request's `Embeddings`, or the exception that request must raise."""


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
            windowed={owner[w][1].id: windows for w, windows in result.windowed.items() if owner[w][0] == n},
        ))
    return out


def run_merged(
    embed: Callable[[list[Record]], Embeddings],
    requests: Sequence[Sequence[Record]],
    refusals: tuple[type[BaseException], ...] = (InvalidInputError,),
) -> tuple[list[Outcome], int]:
    """Embed every request in one call of `embed`, or one call each when the merged call is refused.

    A request alone keeps its own record ids (so its errors name them as sent).

    Args:
        embed: the model call (options already applied), on any list of records.
        requests: each request's records (ids unique within a request).
        refusals: what the merged call may raise for one request's records; anything
            else (a crash, a bug) propagates, for the caller to answer every request with.

    Returns:
        Per request its `Embeddings` or the exception it must raise, and the number of calls made.
    """
    if len(requests) > 1:
        try:
            merged = embed(merge_records(requests))
        except refusals:
            pass  # some request's record broke the shared call: find out which one alone
        else:
            return list(split_embeddings(merged, requests)), 1
    outcomes: list[Outcome] = []
    for records in requests:
        try:
            outcomes.append(embed(list(records)))
        except Exception as exc:  # this request's own error, not its neighbours'
            outcomes.append(exc)
    return outcomes, len(requests)
