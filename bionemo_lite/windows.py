"""Proteins longer than a model's window: the windows, and the one rule that merges them.

Under the length policy ``"window"`` (or ``"window:STRIDE"``), a record of L residues over the
model's maximum W is read through windows of W residues that start every STRIDE residues
(default ``W // 2``), the last one ending at the record's end. Each window goes through the model
as a sequence of its own (with its own BOS and EOS); records that fit are read whole, as always.

The merge rule, the same for every verb: **each residue is taken from the window where it is most
central**, the window in which its distance to the nearer edge, ``min(p - start, end - 1 - p)``, is
largest (on a tie, the earlier window). So it always sees at least ``(W - STRIDE) // 2`` residues of
context on either side, except near the record's own ends. Then:

* ``per_residue``: row p of the merged ``[L, D]`` matrix is row ``p - start`` of its window's;
* ``mean`` / ``max``: over the merged matrix (every residue counted once);
* ``bos``: the BOS vector of the first window (the one that starts at the N-terminus);
* ``pll``: the sum over residues of log p(residue | its position masked), each read from its window;
* ``masked_marginals`` / ``wt_marginals``: each substituted position is read from the window of
  W residues centred on it (moved inward at the record's ends), as fair-esm's variant scripts do.

Results name the windowed records with the windows used (`Windows`): ``Embeddings.windowed`` and
``Scores.windowed``. Contacts are not read through windows (the models refuse the policy there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .batching import token_budget_batches
from .encoding import BatchEncoder, embed_records
from .pooling import PER_RESIDUE, Pooling
from .records import Inputs, LengthPolicy, Record, window_stride
from .results import Embeddings

Span = tuple[int, int]
"""Residues ``start`` (0-based) to ``end`` (exclusive) of a record."""


@dataclass(frozen=True)
class Windows:
    """The windows one record was read through.

    Attributes:
        size: residues per window (the model's maximum).
        stride: residues between window starts; None when the windows are centred on the scored
            positions (``masked_marginals``, ``wt_marginals``).
        spans: each window's residues, ``(start, end)`` with 0-based start and exclusive end.
    """

    size: int
    stride: int | None
    spans: tuple[Span, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "stride": self.stride, "count": len(self.spans),
                "spans": [list(span) for span in self.spans]}


@dataclass(frozen=True)
class WindowPlan:
    """Windows of `size` residues every `stride` residues, and the merge rule (see the module docstring)."""

    size: int
    stride: int

    @classmethod
    def for_policy(cls, policy: LengthPolicy, size: int) -> WindowPlan:
        """The plan of a length policy (``"window:STRIDE"`` sets the stride; any other policy gets the default,
        which only matters for records over `size`, and only a window policy lets those through)."""
        return cls(size, window_stride(policy, size) or window_stride("window", size) or 1)

    def spans(self, length: int) -> list[Span]:
        """The windows of a record of `length` residues: one ``(0, length)`` when it fits."""
        if length <= self.size:
            return [(0, length)]
        starts = list(range(0, length - self.size, self.stride)) + [length - self.size]
        return [(s, s + self.size) for s in starts]

    def owners(self, length: int) -> np.ndarray:
        """Per residue, the index (into `spans`) of the window it is most central in."""
        positions = np.arange(length)
        owner = np.zeros(length, dtype=np.intp)
        best = np.full(length, -1)
        for k, (start, end) in enumerate(self.spans(length)):
            centrality = np.minimum(positions - start, end - 1 - positions)
            better = (positions >= start) & (positions < end) & (centrality > best)  # strict: ties keep the earlier
            owner[better] = k
            best[better] = centrality[better]
        return owner

    def assignments(self, length: int) -> list[tuple[Span, list[int]]]:
        """Each window with the residues (0-based) it is the owner of."""
        owner = self.owners(length)
        return [(span, np.flatnonzero(owner == k).tolist()) for k, span in enumerate(self.spans(length))]

    def merge(self, length: int, rows: Sequence[np.ndarray]) -> np.ndarray:
        """One ``[length, D]`` matrix from each window's per-residue ``[size, D]`` rows (in `spans` order)."""
        merged = np.empty((length, *np.shape(rows[0])[1:]), dtype=np.float32)
        for ((start, _), owned), window_rows in zip(self.assignments(length), rows):
            merged[owned] = np.asarray(window_rows)[np.asarray(owned, dtype=np.intp) - start]
        return merged

    def centred(self, length: int, position: int) -> Span:
        """The window of `size` residues centred on residue `position` (0-based), moved inside the record."""
        start = min(max(position - self.size // 2, 0), max(length - self.size, 0))
        return start, min(start + self.size, length)

    def windows(self, length: int) -> Windows:
        """The `Windows` of a record of `length` residues read by this plan."""
        return Windows(self.size, self.stride, tuple(self.spans(length)))

    def windowed(self, ids: Sequence[str], lengths: Sequence[int]) -> dict[str, Windows]:
        """The records (by id) that needed windows, with theirs."""
        return {rid: self.windows(n) for rid, n in zip(ids, lengths) if n > self.size}


def windowed_encoder(
    encode_batch: BatchEncoder, plan: WindowPlan, tokens_per_batch: int | None, extra_tokens: int,
    packed: bool = False,
) -> BatchEncoder:
    """`encode_batch` for records of any length: those over ``plan.size`` are read through windows.

    The records that fit go through `encode_batch` together, as they are. A longer one's windows
    go through it in token-budget batches for their per-residue rows, merged by `WindowPlan.merge`
    and then pooled (``bos``: its first window's BOS vector).
    """

    def encode_long(record: Record, layers: tuple[int, ...], pooling: Pooling) -> dict[int, np.ndarray]:
        spans = plan.spans(len(record.sequence))
        pieces = [Record(f"{record.id}[{s}:{e}]", record.sequence[s:e], record.index) for s, e in spans]
        if pooling.needs_bos:
            return encode_batch(pieces[:1], layers, pooling)[0]
        rows: dict[int, Mapping[int, np.ndarray]] = {}
        for batch in token_budget_batches([e - s for s, e in spans], tokens_per_batch, extra_tokens, packed=packed):
            rows.update(zip(batch, encode_batch([pieces[k] for k in batch], layers, PER_RESIDUE)))
        n = len(record.sequence)
        merged = {lay: plan.merge(n, [rows[k][lay] for k in range(len(spans))]) for lay in layers}
        if pooling.per_position:
            return merged
        everywhere = np.ones((1, n), dtype=bool)
        return {lay: pooling.numpy(merged[lay][None], everywhere)[0] for lay in layers}

    def encode(
        records: list[Record], layers: tuple[int, ...], pooling: Pooling, *prepared: Any
    ) -> list[dict[int, np.ndarray]]:
        fits = [i for i, r in enumerate(records) if len(r.sequence) <= plan.size]
        out: dict[int, dict[int, np.ndarray]] = {}
        # inputs prepared ahead (`prepare_fitting`) cover the whole batch: they are of use when all of it fits
        ahead = prepared if prepared and prepared[0] is not None and len(fits) == len(records) else ()
        if fits:
            out.update(zip(fits, encode_batch([records[i] for i in fits], layers, pooling, *ahead)))
        for i, record in enumerate(records):
            if i not in out:
                out[i] = encode_long(record, layers, pooling)
        return [out[i] for i in range(len(records))]

    return encode


def embed_records_windowed(
    model_name: str,
    inputs: Inputs,
    encode_batch: BatchEncoder,
    *,
    max_length: int,
    on_too_long: LengthPolicy = "error",
    tokens_per_batch: int | None = None,
    extra_tokens: int = 2,
    packed: bool = False,
    **options: Any,
) -> Embeddings:
    """`bionemo_lite.encoding.embed_records` that also takes the window policy (``"window"``,
    ``"window:STRIDE"``): records over `max_length` are read through windows (`windowed_encoder`)
    and named, with their windows, in ``Embeddings.windowed``."""
    plan = WindowPlan.for_policy(on_too_long, max_length)
    if options.get("prepare") is not None:
        options["prepare"] = prepare_fitting(options["prepare"], plan)
    result = embed_records(
        model_name,
        inputs,
        windowed_encoder(encode_batch, plan, tokens_per_batch, extra_tokens, packed),
        max_length=max_length,
        on_too_long=on_too_long,
        tokens_per_batch=tokens_per_batch,
        extra_tokens=extra_tokens,
        packed=packed,
        **options,
    )
    result.windowed = plan.windowed(result.ids, result.lengths)
    return result


def prepare_fitting(prepare: Callable[[list[Record]], Any], plan: WindowPlan) -> Callable[[list[Record]], Any]:
    """`prepare` for batches whose records all fit in one window (None for the others: they are read
    through windows, batch by batch, when they come)."""
    return lambda records: prepare(records) if all(len(r.sequence) <= plan.size for r in records) else None
