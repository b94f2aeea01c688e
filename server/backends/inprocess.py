"""The default provider: models run in this process, on CPU or GPU.

Each model is loaded once, on its first request or in the background of
start-up (see `server.preload`: the preload setting, the cached models, or the
default model, downloaded first). Concurrent first requests share one load; a
load that fails is not remembered, so a request after the weights have been put
in place loads them (why it failed is kept, for the listing and the readiness
probe). Model calls run in worker threads so the event loop keeps answering
(health checks, other models) while torch works, and a model runs one call at
a time: its weights are shared and most plugins are not re-entrant.
Concurrent ``embed`` requests are merged into one model call (see `batcher`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import bionemo_lite
from bionemo_lite.binding import verb_method
from bionemo_lite.cancellation import CancelToken, run_with_token
from bionemo_lite.errors import UnsupportedVerbError
from bionemo_lite.model import BioModel
from bionemo_lite.records import Record
from bionemo_lite.registry import get_spec
from bionemo_lite.spec import ModelSpec
from bionemo_lite.verbs import VERB_PROTOCOLS, EmbedOptions
from bionemo_lite.weights import list_cached, pull, weights_available

from .. import metrics
from ..preload import is_registered
from ..problems import Problem, nothing_to_serve, problem_of, weights_missing
from ..settings import DEFAULT_MODEL
from .base import LiveCalls, ProviderBase, Readiness, embeddings_to_json
from .batcher import EmbedBatcher, run_group

if TYPE_CHECKING:
    from ..settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _Slot:
    """One model's place in the pool."""

    model: BioModel | None = None
    loading: asyncio.Future | None = None
    loads: int = 0
    queue: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Held by the worker thread itself: a cancelled request frees `queue` while its
    # thread still runs, and the next call must still wait for it.
    running: threading.Lock = field(default_factory=threading.Lock)
    downloading: bool = False
    problem: Problem | None = None
    """Why the last load failed; cleared by a successful one."""


class ModelPool:
    """Loaded models by name, with lazy loading that is safe under concurrent first requests."""

    def __init__(self, settings: Settings, executor: ThreadPoolExecutor,
                 app_metrics: metrics.ServiceMetrics | None = None):
        self._settings = settings
        self._executor = executor
        self._metrics = app_metrics
        self._slots: dict[str, _Slot] = {}
        self._torch_ready = False
        self._live = LiveCalls()

    def _slot(self, name: str) -> _Slot:
        # Only the event-loop thread touches `_slots`, so no lock is needed here.
        return self._slots.setdefault(name, _Slot())

    def loaded(self, name: str) -> bool:
        slot = self._slots.get(name)
        return slot is not None and slot.model is not None

    def loads(self, name: str) -> int:
        slot = self._slots.get(name)
        return slot.loads if slot is not None else 0

    def state(self, name: str) -> str:
        """``"loaded"``, ``"downloading"``, ``"loading"``, ``"failed"`` (see `problem`) or ``"not_loaded"``."""
        slot = self._slots.get(name)
        if slot is None:
            return "not_loaded"
        if slot.model is not None:
            return "loaded"
        if slot.loading is not None:
            return "downloading" if slot.downloading else "loading"
        return "failed" if slot.problem is not None else "not_loaded"

    def problem(self, name: str) -> Problem | None:
        slot = self._slots.get(name)
        return slot.problem if slot is not None else None

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _load(self, name: str) -> BioModel:
        started = time.perf_counter()
        self._configure_torch()
        settings = self._settings
        logger.info("loading %s on %s", name, settings.device)
        model = bionemo_lite.load(name, weights=settings.weights.get(name), device=settings.device,
                                  dtype=settings.dtype, numerics=settings.numerics)
        logger.info("loaded %r", model)
        metrics.observe_load(self._metrics, name, started)
        return model

    def _configure_torch(self) -> None:
        if self._torch_ready or self._settings.torch_threads is None:
            return
        import torch

        torch.set_num_threads(self._settings.torch_threads)
        self._torch_ready = True

    async def _load_into(self, name: str, slot: _Slot, download: bool) -> BioModel:
        try:
            if download:
                slot.downloading = True
                await _in_daemon_thread(self._download, name)
                slot.downloading = False
            model = await self._in_thread(self._load, name)
            slot.model = model
            slot.loads += 1
            slot.problem = None
            return model
        except Exception as exc:
            slot.problem = problem_of(name, exc, self._settings.weights.get(name))
            raise
        finally:
            slot.downloading = False
            slot.loading = None

    def _download(self, name: str) -> None:
        spec = get_spec(name)
        if weights_available(spec, self._settings.weights.get(name)):
            return
        logger.info("downloading the weights of %s into the cache (once; later starts use the cache)", name)
        logger.info("%s: downloaded to %s", name, pull(spec, progress=False))

    async def get(self, name: str, download: bool = False) -> BioModel:
        """The loaded model, loading it first if needed (one load however many callers wait).

        Args:
            download: when its weights are not there, fetch them into the cache first
                (nothing is downloaded for requests; only the default model at start-up).
        """
        slot = self._slot(name)
        if slot.model is not None:
            return slot.model
        if slot.loading is None:
            slot.loading = asyncio.ensure_future(self._load_into(name, slot, download))
            # Mark the error as seen even if every waiter went away.
            slot.loading.add_done_callback(lambda f: f.cancelled() or f.exception())
        # shield: a client that disconnects must not cancel the load the others wait for.
        return await asyncio.shield(slot.loading)

    async def run(self, name: str, fn: Callable[[BioModel], T], on_turn: Callable[[], None] | None = None,
                  token: CancelToken | None = None) -> T:
        """Run ``fn(model)`` in a worker thread, one call at a time per model.

        A caller that is cancelled while queued never starts `fn`; once `fn` runs, the
        call's `token` is cancelled and `fn` stops at its next batch boundary, freeing the model.

        Args:
            on_turn: called on the event loop once the model is this call's, just before `fn` starts.
            token: cancels the call (e.g. shared by the requests of a merged group); one of its own if None.
        """
        model = await self.get(name)
        slot = self._slots[name]
        token = token if token is not None else CancelToken()

        def locked() -> T:
            with slot.running:
                # not started if given up on while it waited
                return run_with_token(token, lambda: metrics.computed(self._metrics, name, fn, model))

        with self._live.tracking(token):
            async with metrics.queued(self._metrics, name, slot.queue):
                if on_turn is not None:
                    on_turn()
                return await self._in_thread(locked)

    async def close(self) -> None:
        self._live.cancel_all("the server is shutting down")  # running calls stop at their next batch
        for name, slot in self._slots.items():
            if slot.model is not None:
                try:
                    await self._in_thread(slot.model.close)
                except Exception:  # closing one model must not keep the others open
                    logger.exception("closing %s failed", name)
                slot.model = None


async def _in_daemon_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn` in a daemon thread: a download must not hold up the process's exit the way
    executor threads (joined at exit) would."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:  # handed to the awaiting coroutine
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop closed while we worked: nobody waits any more
            pass

    threading.Thread(target=work, name="bionemo-download", daemon=True).start()
    return await done


def _serving(model: BioModel, verb: str) -> BioModel:
    """`model`, refusing verbs it does not declare or implement (the Protocol of `verb`)."""
    verb_method(model, verb)
    if not isinstance(model, VERB_PROTOCOLS[verb]):
        raise UnsupportedVerbError(model.name, verb, model.verbs)
    return model


class InProcessProvider(ProviderBase):
    """The pool of `bionemo_lite` models loaded in this process: loads, locks, preload and readiness."""

    kind = "inprocess"

    def __init__(self, settings: Settings, app_metrics: metrics.ServiceMetrics | None = None):
        super().__init__(settings)
        self._executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="bionemo-model")
        self.pool = ModelPool(settings, self._executor, app_metrics)
        self.batcher = EmbedBatcher(settings.batch_window_ms / 1000.0, settings.max_batch_records, app_metrics)
        self._started = False
        self._closed = False
        self._preload: tuple[str, ...] = ()
        self._preloading: dict[str, asyncio.Task] = {}

    async def start(self, preload: Sequence[str] = (), download: Sequence[str] = ()) -> None:
        """Start loading `preload` in the background and return at once: the service answers
        (``/v1/health/ready`` says 503 "loading") while models download and load."""
        self._preload = tuple(dict.fromkeys(preload))
        for name in self._preload:
            self._start_preload(name, download=name in download)
        self._started = True

    def _start_preload(self, name: str, download: bool) -> None:
        self._preloading[name] = asyncio.ensure_future(self._preload_one(name, download))

    async def _preload_one(self, name: str, download: bool) -> None:
        try:
            await self.pool.get(name, download=download)
        except Exception as exc:
            problem = self.pool.problem(name)
            # Said once per failed attempt, not per probe; the cause keeps the server paths.
            logger.warning("not ready: %s [cause: %s: %s]", problem.detail if problem else name,
                           type(exc).__name__, exc)
            return
        finally:
            self._preloading.pop(name, None)
        if all(self.pool.loaded(n) for n in self._preload):
            logger.info("bionemo-lite ready: %s loaded", ", ".join(self._preload))

    async def readiness(self) -> Readiness:
        """Ready when every preloaded model is loaded and every file named in ``weights`` exists.

        A preload that failed for want of weights is retried as soon as they are there
        (after ``bionemo-lite weights pull``, say), without a restart.
        """
        if not self._started or self._closed:
            return Readiness("not_ready", "the service is " + ("shutting down" if self._closed else "starting"))
        loading: list[str] = []
        missing: list[Problem] = []
        downloading = False
        for name in self._preload:
            state = self.pool.state(name)
            if state == "loaded":
                continue
            problem = self.pool.problem(name)
            if name not in self._preloading and problem is not None and problem.reason == "weights_not_found" \
                    and weights_available(get_spec(name), self.settings.weights.get(name)):
                self._start_preload(name, download=False)
            if name in self._preloading:
                loading.append(name)
                downloading |= state == "downloading"
            else:
                missing.append(problem or weights_missing(get_spec(name), self.settings.weights.get(name)))
        for name, path in self.settings.weights.items():
            if name not in self._preload and not Path(path).expanduser().exists():
                missing.append(weights_missing(get_spec(name), path))
        if not self._preload and not self.settings.weights and not any(map(is_registered, list_cached())):
            missing.append(nothing_to_serve(get_spec(DEFAULT_MODEL) if is_registered(DEFAULT_MODEL) else None))
        if missing:
            return Readiness("not_ready", " ".join(p.detail for p in missing),
                             tuple(p.to_dict() for p in missing), tuple(loading))
        if loading:
            note = " (downloading weights into the cache first)" if downloading else ""
            return Readiness("loading", f"loading {', '.join(loading)}{note}", (), tuple(loading))
        return Readiness("ready")

    def model_facts(self, spec: ModelSpec) -> dict[str, Any]:
        counters = self.batcher.counters(spec.name)
        state = self.pool.state(spec.name)
        given = self.settings.weights.get(spec.name)
        problem = self.pool.problem(spec.name) if state == "failed" else None
        if problem is None and state == "not_loaded" and not weights_available(spec, given):
            problem = weights_missing(spec, given)
        return {"loaded": state == "loaded", "state": state, "loads": self.pool.loads(spec.name),
                "problem": problem.to_dict() if problem is not None else None,
                "batched_calls": counters.calls, "batched_requests": counters.requests}

    async def model(self, name: str) -> BioModel:
        """The loaded model (loading it first, in a worker thread, if needed)."""
        return await self.pool.get(name)

    async def run(self, name: str, verb: str, job: Callable[[Any], T]) -> T:
        """``job(model)`` in a worker thread, once the model is free (one call at a time per model)."""
        return await self.pool.run(name, lambda model: job(_serving(model, verb)))

    async def embed(self, name: str, options: EmbedOptions, records: list[Record]) -> dict[str, Any]:
        """Merged with concurrent requests for `name` with equal `options` into one model call."""

        def runner(model: BioModel, requests: list[list[Record]]) -> Any:
            embedder = _serving(model, "embed")
            return run_group(lambda recs: options.run(embedder, recs), embeddings_to_json, requests)

        return await self.batcher.submit(name, options, records, runner,
                                         lambda job, on_turn, token: self.pool.run(name, job, on_turn, token))

    async def close(self) -> None:
        self._closed = True
        for task in list(self._preloading.values()):
            task.cancel()
        await self.pool.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
