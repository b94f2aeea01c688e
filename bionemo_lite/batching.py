"""Length-sorted token-budget batching with out-of-memory recovery.

Used by every plugin so that all front doors batch the same way: records are
sorted by length (padding stays small), packed while ``batch_size * longest``
fits the token budget, and a batch that runs out of accelerator memory is
split in half and retried; a single record that still does not fit fails alone.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from numbers import Integral
from typing import Any, TypeVar

from .cancellation import raise_if_cancelled
from .errors import BionemoLiteError, InvalidInputError

logger = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_TOKENS_PER_BATCH = 4096  # fair-esm extract.py's default

# Who hears of finished records when a verb's caller passes no `on_progress` (see `reporting_progress`).
_progress_listener: contextvars.ContextVar[Callable[[int], None] | None] = contextvars.ContextVar(
    "bionemo_lite_progress_listener", default=None
)


@contextlib.contextmanager
def reporting_progress(listener: Callable[[int], None]) -> Iterator[None]:
    """Within the block, every `run_batches` call reports its finished records to `listener`.

    Lets a batch job advance its progress bar batch by batch inside one verb
    call (a verb call may cover hundreds of records) without every verb
    taking a callback argument. The listener is per thread / task.
    """
    token = _progress_listener.set(listener)
    try:
        yield
    finally:
        _progress_listener.reset(token)


def check_tokens_per_batch(tokens_per_batch: int | None) -> int:
    """The padded-token budget to use: `DEFAULT_TOKENS_PER_BATCH` for None, else a positive integer.

    Raises:
        InvalidInputError: anything but None or a positive integer (booleans included).
    """
    if tokens_per_batch is None:
        return DEFAULT_TOKENS_PER_BATCH
    if isinstance(tokens_per_batch, bool) or not isinstance(tokens_per_batch, Integral) or tokens_per_batch < 1:
        raise InvalidInputError(f"tokens_per_batch must be a positive number of tokens, got {tokens_per_batch!r}")
    return int(tokens_per_batch)


def token_budget_batches(
    lengths: Sequence[int],
    tokens_per_batch: int | None = DEFAULT_TOKENS_PER_BATCH,
    extra_tokens: int = 0,
    max_batch_size: int | None = None,
    *,
    packed: bool = False,
) -> list[list[int]]:
    """Group record indices into batches of at most `tokens_per_batch` tokens.

    Args:
        lengths: length of each record.
        tokens_per_batch: budget of ``len(batch) * (longest + extra_tokens)`` padded tokens, or with
            `packed` of ``sum(length + extra_tokens)`` real ones (None: the default). A record longer
            than the budget gets a batch of its own.
        extra_tokens: tokens the model adds per record (BOS/EOS).
        max_batch_size: optional cap on records per batch.
        packed: the model runs batches packed (`bionemo_lite.packing`): nothing is padded, so the
            budget counts real tokens and a batch of short records holds more of them.

    Returns:
        Lists of indices into `lengths`; shortest records first.

    Raises:
        InvalidInputError: a budget that is not a positive integer (`check_tokens_per_batch`).
    """
    tokens_per_batch = check_tokens_per_batch(tokens_per_batch)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0  # real tokens in `current`
    for i in order:
        need = lengths[i] + extra_tokens
        # sorted by length, so the newest record is the longest: padded cost = count * its length
        cost = real + need if packed else (len(current) + 1) * need
        too_many = max_batch_size is not None and len(current) >= max_batch_size
        if current and (too_many or cost > tokens_per_batch):
            batches.append(current)
            current, real = [], 0
        current.append(i)
        real += need
    if current:
        batches.append(current)
    return batches


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors (torch raises several kinds)."""
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    return isinstance(exc, (RuntimeError, MemoryError)) and "out of memory" in str(exc).lower()


def _release_cached_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def run_batches(
    batches: Sequence[Sequence[int]],
    run: Callable[..., Mapping[int, T]],
    on_progress: Callable[[int], None] | None = None,
    *,
    prepare: Callable[[list[int]], Any] | None = None,
) -> tuple[dict[int, T], dict[int, str]]:
    """Run `run` on each batch, splitting batches that run out of memory.

    Args:
        batches: lists of record indices.
        run: computes one batch, returning ``{index: result}``; with `prepare`, called as
            ``run(batch, prepare(batch))``.
        on_progress: called with the number of records finished after each batch
            (default: the listener of an enclosing `reporting_progress`, if any).
        prepare: builds a batch's inputs (tokenise, pin, start the copy to the device). It runs one
            batch ahead in a background thread, so the next batch's inputs are ready (on a GPU: already
            copied) when the current one's results come back; halves of a split batch are prepared
            in line.

    Returns:
        Results by index, and failure reasons by index for records that could
        not be computed even alone. Errors other than out-of-memory propagate:
        a `BionemoLiteError` for one record is the caller's to report, and
        `RequestCancelledError` before the next batch once the call's token
        (`bionemo_lite.cancellation`) is cancelled.
    """
    on_progress = on_progress or _progress_listener.get()
    results: dict[int, T] = {}
    failures: dict[int, str] = {}
    pending: list[list[int]] = [list(b) for b in reversed(batches)]
    ahead = _Prefetch(prepare) if prepare is not None else None
    try:
        while pending:
            raise_if_cancelled()  # a batch boundary: a cancelled call stops here (free without a token)
            batch = pending.pop()
            _run_one(batch, run, ahead, pending, results, failures, on_progress)
    finally:
        if ahead is not None:
            ahead.close()
    return results, failures


class _Prefetch:
    """`prepare` of the next batch, running in one background thread while the current batch computes."""

    def __init__(self, prepare: Callable[[list[int]], Any]):
        from concurrent.futures import ThreadPoolExecutor

        self.prepare = prepare
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="bionemo-lite-prefetch")
        self.started: dict[tuple[int, ...], Any] = {}

    def get(self, batch: list[int], following: list[int] | None) -> Any:
        """The inputs of `batch` (prepared ahead, or now), after starting `following`'s."""
        future = self.started.pop(tuple(batch), None)
        inputs = future.result() if future is not None else self.prepare(batch)
        if following is not None and tuple(following) not in self.started:
            self.started[tuple(following)] = self.pool.submit(self.prepare, following)
        return inputs

    def close(self) -> None:
        for future in self.started.values():
            future.cancel()
        self.pool.shutdown(wait=True)


def _run_one(
    batch: list[int],
    run: Callable[..., Mapping[int, T]],
    ahead: _Prefetch | None,
    pending: list[list[int]],
    results: dict[int, T],
    failures: dict[int, str],
    on_progress: Callable[[int], None] | None,
) -> None:
    """One step of `run_batches`: run `batch`, or split it on out-of-memory and queue the halves."""
    try:
        if ahead is None:
            results.update(run(batch))
        else:
            results.update(run(batch, ahead.get(batch, pending[-1] if pending else None)))
    except BionemoLiteError:
        raise
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        _release_cached_memory()
        if len(batch) == 1:
            failures[batch[0]] = f"out of memory even alone ({exc.__class__.__name__})"
            logger.warning("record %d does not fit in memory: %s", batch[0], exc)
        else:
            half = len(batch) // 2
            logger.info("batch of %d ran out of memory; retrying as %d + %d", len(batch), half, len(batch) - half)
            pending.extend([batch[half:], batch[:half]])
        return
    if on_progress is not None:
        on_progress(len(batch))


def chunked(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
