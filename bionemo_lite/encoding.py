"""The embed flow shared by sequence encoders (ESM-2, ProtT5, ...).

A plugin supplies one function that runs a batch of clean records through its
network and returns, per record and layer, the pooled vector or the
per-residue matrix (pooling happens on the device, with `Pooling.torch`, so only
what the user asked for is copied back). This module does the rest the same
way for every family: validation, length policy, token-budget batches,
out-of-memory splitting, input order, and the `Embeddings` result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .batching import check_tokens_per_batch, run_batches, token_budget_batches
from .errors import InvalidInputError
from .pooling import DEFAULT_POOLINGS, Pooling, get_pooling
from .records import Inputs, LengthPolicy, Record, prepare_proteins
from .results import Embeddings, RecordError

# records of one batch, absolute layers, pooling[, inputs from `prepare`] -> per record: {layer: array}
BatchEncoder = Callable[..., list[dict[int, np.ndarray]]]


def resolve_layers(layer: int | Sequence[int], num_layers: int) -> tuple[int, ...]:
    """Absolute layer indices in ``0..num_layers`` (0 = embeddings; -1 = last).

    Raises:
        InvalidInputError: a layer outside the model.
    """
    if isinstance(layer, (bool, str)) or not isinstance(layer, (int, np.integer, Sequence)):
        raise InvalidInputError(f"layer must be an integer or a list of integers, got {layer!r}")
    wanted = [layer] if isinstance(layer, (int, np.integer)) else list(layer)
    if any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) for x in wanted):
        raise InvalidInputError(f"layers must be integers, got {wanted!r}")
    if not wanted:
        raise InvalidInputError("at least one layer must be requested")
    out: list[int] = []
    for raw in wanted:
        idx = int(raw) + num_layers + 1 if int(raw) < 0 else int(raw)
        if not 0 <= idx <= num_layers:
            raise InvalidInputError(
                f"layer {raw} does not exist: the model has layers 0..{num_layers} (or -{num_layers + 1}..-1)"
            )
        if idx not in out:
            out.append(idx)
    return tuple(out)


def embed_records(
    model_name: str,
    inputs: Inputs,
    encode_batch: BatchEncoder,
    *,
    num_layers: int,
    max_length: int,
    layer: int | Sequence[int] = -1,
    pooling: str = "mean",
    on_too_long: LengthPolicy = "error",
    tokens_per_batch: int | None = None,
    extra_tokens: int = 2,
    poolings: Sequence[str] = DEFAULT_POOLINGS,
    packed: bool = False,
    prepare: Callable[[list[Record]], Any] | None = None,
) -> Embeddings:
    """Validate, batch, encode and assemble an `Embeddings` result in input order.

    `packed`: the plugin runs batches packed, so the budget counts real tokens
    (`bionemo_lite.batching.token_budget_batches`). `prepare`: builds a batch's device
    inputs one batch ahead (`bionemo_lite.batching.run_batches`); `encode_batch` then gets
    them as a fourth argument. Records that run out of memory even alone are reported in
    ``Embeddings.errors``; every other record is still returned.
    """
    budget = check_tokens_per_batch(tokens_per_batch)  # before any work: a bad budget is the caller's error
    pool = get_pooling(pooling, poolings)
    layers = resolve_layers(layer, num_layers)
    records, truncated = prepare_proteins(inputs, max_length, on_too_long)
    batches = token_budget_batches([len(r.sequence) for r in records], budget, extra_tokens, packed=packed)

    def run(batch: list[int], *prepared: Any) -> dict[int, dict[int, np.ndarray]]:
        outputs = encode_batch([records[i] for i in batch], layers, pool, *prepared)
        return dict(zip(batch, outputs))

    ahead = None if prepare is None else (lambda batch: prepare([records[i] for i in batch]))
    results, failures = run_batches(batches, run, prepare=ahead)
    kept = [i for i in range(len(records)) if i in results]
    by_layer: dict[int, object] = {}
    for lay in layers:
        arrays = [np.asarray(results[i][lay], dtype=np.float32) for i in kept]
        if pool.per_position:
            by_layer[lay] = arrays
        else:
            dim = arrays[0].shape[-1] if arrays else 0
            by_layer[lay] = np.stack(arrays) if arrays else np.zeros((0, dim), np.float32)
    return Embeddings(
        model=model_name,
        ids=[records[i].id for i in kept],
        lengths=[len(records[i].sequence) for i in kept],
        layers=layers,
        pooling=pooling,
        by_layer=by_layer,
        truncated=truncated,
        errors=[RecordError(records[i].id, records[i].index, reason) for i, reason in sorted(failures.items())],
    )
