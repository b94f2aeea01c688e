"""RDKit parsing of untrusted SMILES where a crash or a hang cannot take the caller down.

`bionemo_lite.smiles_text` keeps every SMILES within bounds RDKit handles, but
RDKit is native code and a bound is only as good as what we know of it. So by
default the parsing itself runs in a worker process (a `pebble` pool: per-task
timeouts, a dead worker is replaced): a segfault or a timeout there fails the
record that caused it, with a reason, and the others go on. A batch that
crashes or times out is retried record by record to find the culprit.

The worker is started with ``spawn`` (no fork of a process holding torch
threads or CUDA), once per process, on first use; it imports RDKit and this
module only. ``BIONEMO_LITE_SMILES_ISOLATION=inprocess`` (or
``configure(isolation="inprocess")``) parses in the calling process instead:
faster to start, but a crash in RDKit is then the caller's.
``BIONEMO_LITE_SMILES_TIMEOUT`` is the time budget per record, in seconds (default 10),
``BIONEMO_LITE_SMILES_WORKERS`` the number of worker processes (default 1).
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import sys
import threading
import types
from collections.abc import Sequence
from concurrent.futures import Future, TimeoutError as FutureTimeout
from typing import Literal

from .errors import BionemoLiteError, InvalidInputError
from .smiles_text import MAX_SMILES_CHARACTERS

logger = logging.getLogger(__name__)

Isolation = Literal["worker", "inprocess"]
ISOLATION_ENV = "BIONEMO_LITE_SMILES_ISOLATION"
TIMEOUT_ENV = "BIONEMO_LITE_SMILES_TIMEOUT"
WORKERS_ENV = "BIONEMO_LITE_SMILES_WORKERS"
DEFAULT_TIMEOUT_S = 10.0  # per record: ~50x the slowest SMILES the length cap lets through
BATCH_SIZE = 256  # SMILES per task sent to the worker: amortises the round trip
_BATCH_SECONDS_PER_RECORD = 0.05  # a whole batch may take this long per record on top of one budget

# What the worker sends back per SMILES: (text, None, None) when it parses, else (None, reason, position).
Outcome = tuple[str | None, str | None, int | None]


def _parse_texts(texts: Sequence[str], canonicalize: bool, max_characters: int = MAX_SMILES_CHARACTERS) -> list[Outcome]:
    """Parse each SMILES (`chem.parse_smiles`); canonical text or the reason it failed. Runs in the worker."""
    from rdkit import Chem

    from .chem import parse_smiles

    out: list[Outcome] = []
    for text in texts:
        try:
            mol = parse_smiles(text, max_characters=max_characters)
            out.append((Chem.MolToSmiles(mol) if canonicalize else text.strip(), None, None))
        except InvalidInputError as exc:
            out.append((None, exc.reason, exc.position))
        except Exception as exc:  # RDKit raising for one input must fail that input, not the batch
            out.append((None, f"RDKit failed parsing this SMILES: {exc}", None))
    return out


def _warm_up() -> None:
    """Worker initializer: import RDKit before the first task, so its time budget is the parse's own."""
    import rdkit.Chem  # noqa: F401


_main_lock = threading.Lock()


class _WorkerProcess(multiprocessing.context.SpawnProcess):
    """A spawned process that does not run the parent's ``__main__`` again.

    ``spawn`` re-imports the parent's main script in the child, so a user's script
    without an ``if __name__ == "__main__":`` guard would run a second time inside
    the worker. The worker needs only this module: while it starts, ``__main__`` is
    an empty module, so nothing of it travels.
    """

    def start(self) -> None:
        with _main_lock:
            main = sys.modules.get("__main__")
            sys.modules["__main__"] = types.ModuleType("__main__")
            try:
                super().start()
            finally:
                if main is not None:
                    sys.modules["__main__"] = main


class _WorkerContext(multiprocessing.context.SpawnContext):
    Process = _WorkerProcess


def _isolation_from_env() -> Isolation:
    value = os.environ.get(ISOLATION_ENV, "worker").strip().lower() or "worker"
    if value not in ("worker", "inprocess"):
        raise BionemoLiteError(f"{ISOLATION_ENV} must be 'worker' or 'inprocess', got {value!r}")
    return value  # type: ignore[return-value]


def _number_from_env(name: str, default: float, kind: type = float) -> float:
    value = os.environ.get(name, "").strip()
    try:
        number = kind(value) if value else default
    except ValueError:
        raise BionemoLiteError(f"{name} must be a positive {kind.__name__}, got {value!r}") from None
    if not number > 0:
        raise BionemoLiteError(f"{name} must be positive, got {value!r}")
    return number


class SmilesParser:
    """Parses SMILES in a worker process (or in this one), one outcome per SMILES.

    Args:
        isolation: ``"worker"`` (a crash or timeout fails one record) or ``"inprocess"``.
        timeout_s: time budget per SMILES in the worker.
        workers: worker processes (parsing in parallel when several threads ask at once).
        max_characters: the longest SMILES handed to RDKit (`smiles_text.MAX_SMILES_CHARACTERS`);
            raise it only with a worker, where a crash costs one record.
    """

    def __init__(
        self,
        isolation: Isolation = "worker",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        workers: int = 1,
        max_characters: int = MAX_SMILES_CHARACTERS,
    ):
        if isolation not in ("worker", "inprocess"):
            raise BionemoLiteError(f"SMILES isolation must be 'worker' or 'inprocess', got {isolation!r}")
        self.isolation: Isolation = isolation
        self.timeout_s = float(timeout_s)
        self.workers = int(workers)
        self.max_characters = int(max_characters)
        self._pool = None
        self._pool_pid = 0  # a forked child must not use its parent's pool (its threads did not survive the fork)
        self._lock = threading.Lock()

    def parse(
        self, texts: Sequence[str], records: Sequence[str | int | None] | None = None, canonicalize: bool = True
    ) -> list[str | InvalidInputError]:
        """Per SMILES, its canonical form (or the stripped text when not `canonicalize`) or the error.

        Args:
            texts: SMILES that passed `bionemo_lite.smiles_text.check_smiles_text`.
            records: the record of each, named in its error.

        Returns:
            In input order: a string, or an `InvalidInputError` naming the record (RDKit's reason,
            or that RDKit crashed or timed out on it). Never raises for one bad SMILES.
        """
        names = list(records) if records is not None else list(range(len(texts)))
        if len(names) != len(texts):
            raise ValueError(f"{len(texts)} SMILES but {len(names)} record names")
        if not texts:
            return []
        if self.isolation == "inprocess":
            outcomes = _parse_texts(texts, canonicalize, self.max_characters)
        else:
            outcomes = self._isolated(list(texts), canonicalize)
        return [text if text is not None else InvalidInputError(reason or "invalid SMILES", record=name,
                                                               position=position)
                for (text, reason, position), name in zip(outcomes, names)]

    # ----- the worker ----------------------------------------------------------------------
    def _get_pool(self):
        with self._lock:
            if self._pool is None or not self._pool.active or self._pool_pid != os.getpid():
                from pebble import ProcessPool

                self._pool = ProcessPool(max_workers=self.workers, initializer=_warm_up, context=_WorkerContext())
                self._pool_pid = os.getpid()
            return self._pool

    def _submit(self, texts: list[str], canonicalize: bool, timeout: float) -> Future:
        return self._get_pool().schedule(_parse_texts, args=(texts, canonicalize, self.max_characters),
                                         timeout=timeout)

    def _isolated(self, texts: list[str], canonicalize: bool) -> list[Outcome]:
        chunks = [texts[i : i + BATCH_SIZE] for i in range(0, len(texts), BATCH_SIZE)]
        futures = [self._submit(c, canonicalize, self._batch_timeout(len(c))) for c in chunks]
        out: list[Outcome] = []
        for chunk, future in zip(chunks, futures):
            try:
                out.extend(future.result())
            except Exception as exc:  # a crash or a timeout: find the record(s) that caused it
                if len(chunk) == 1:
                    out.append(self._failure(exc))
                    continue
                logger.warning("SMILES worker failed on a batch of %d (%s); retrying one by one",
                               len(chunk), _describe(exc))
                singles = [self._submit([t], canonicalize, self.timeout_s) for t in chunk]
                for single in singles:
                    try:
                        out.extend(single.result())
                    except Exception as one:
                        out.append(self._failure(one))
        return out

    def _batch_timeout(self, size: int) -> float:
        return self.timeout_s + _BATCH_SECONDS_PER_RECORD * size if size > 1 else self.timeout_s

    def _failure(self, exc: BaseException) -> Outcome:
        from pebble import ProcessExpired

        if isinstance(exc, FutureTimeout):
            return None, f"RDKit timed out parsing this SMILES (over {self.timeout_s:g} s)", None
        if isinstance(exc, ProcessExpired):
            return None, f"RDKit crashed parsing this SMILES ({_describe(exc)}); the other records are not affected", None
        raise BionemoLiteError(f"the SMILES parser's worker process failed: {exc!r}") from exc

    def close(self) -> None:
        """Stop the worker (a later `parse` starts a new one)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pool_pid == os.getpid():
            pool.stop()
            pool.join(timeout=10)


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "exitcode", None)
    if isinstance(exc, FutureTimeout):
        return "timed out"
    if isinstance(code, int) and code < 0:
        return f"its worker process died of signal {-code}"
    if code is not None:
        return f"its worker process exited with code {code}"
    return repr(exc)


_default: SmilesParser | None = None
_default_lock = threading.Lock()


def default_parser() -> SmilesParser:
    """This process's parser, set by `configure` or else from the environment (a worker by default)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = SmilesParser(_isolation_from_env(), _number_from_env(TIMEOUT_ENV, DEFAULT_TIMEOUT_S),
                                    int(_number_from_env(WORKERS_ENV, 1, int)))
        return _default


def configure(isolation: Isolation | None = None, timeout_s: float | None = None) -> SmilesParser:
    """Replace this process's parser (e.g. ``configure(isolation="inprocess")`` in a trusted notebook)."""
    global _default
    with _default_lock:
        old, _default = _default, SmilesParser(
            isolation or _isolation_from_env(),
            timeout_s if timeout_s is not None else _number_from_env(TIMEOUT_ENV, DEFAULT_TIMEOUT_S),
            int(_number_from_env(WORKERS_ENV, 1, int)))
    if old is not None:
        old.close()
    return _default


def parse_many(
    texts: Sequence[str], records: Sequence[str | int | None] | None = None, canonicalize: bool = True
) -> list[str | InvalidInputError]:
    """`SmilesParser.parse` with this process's parser (`default_parser`)."""
    return default_parser().parse(texts, records, canonicalize)


@atexit.register
def _close_default() -> None:
    if _default is not None:
        _default.close()
