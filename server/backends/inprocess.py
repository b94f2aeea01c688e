"""The default backend: models run in this process, on CPU or GPU.

Each model is loaded once, on its first request (or at start-up with
``preload``). Concurrent first requests share one load; a load that fails is
not remembered, so a request after the weights have been put in place loads
them. Model calls run in worker threads so the event loop keeps answering
(health checks, other models) while torch works, and a model runs one call at
a time: its weights are shared and most plugins are not re-entrant.
Concurrent ``embed`` requests are merged into one model call (see `batcher`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

import bionemo_lite
from bionemo_lite.model import BioModel
from bionemo_lite.spec import ModelSpec

from .base import BackendBase
from .batcher import EmbedBatcher, run_group
from bionemo_lite.binding import bind_options, verb_method

if TYPE_CHECKING:
    from ..schemas import DecodeRequest, EmbedRequest, FoldRequest, GenerateRequest, ScoreRequest
    from ..schemas import ContactsRequest
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


class ModelPool:
    """Loaded models by name, with lazy loading that is safe under concurrent first requests."""

    def __init__(self, settings: Settings, executor: ThreadPoolExecutor):
        self._settings = settings
        self._executor = executor
        self._slots: dict[str, _Slot] = {}
        self._torch_ready = False

    def _slot(self, name: str) -> _Slot:
        # Only the event-loop thread touches `_slots`, so no lock is needed here.
        return self._slots.setdefault(name, _Slot())

    def loaded(self, name: str) -> bool:
        slot = self._slots.get(name)
        return slot is not None and slot.model is not None

    def loads(self, name: str) -> int:
        slot = self._slots.get(name)
        return slot.loads if slot is not None else 0

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _load(self, name: str) -> BioModel:
        self._configure_torch()
        settings = self._settings
        logger.info("loading %s on %s", name, settings.device)
        model = bionemo_lite.load(name, weights=settings.weights.get(name), device=settings.device,
                                  dtype=settings.dtype)
        logger.info("loaded %r", model)
        return model

    def _configure_torch(self) -> None:
        if self._torch_ready or self._settings.torch_threads is None:
            return
        import torch

        torch.set_num_threads(self._settings.torch_threads)
        self._torch_ready = True

    async def _load_into(self, name: str, slot: _Slot) -> BioModel:
        try:
            model = await self._in_thread(self._load, name)
            slot.model = model
            slot.loads += 1
            return model
        finally:
            slot.loading = None

    async def get(self, name: str) -> BioModel:
        """The loaded model, loading it first if needed (one load however many callers wait)."""
        slot = self._slot(name)
        if slot.model is not None:
            return slot.model
        if slot.loading is None:
            slot.loading = asyncio.ensure_future(self._load_into(name, slot))
            # Mark the error as seen even if every waiter went away.
            slot.loading.add_done_callback(lambda f: f.cancelled() or f.exception())
        # shield: a client that disconnects must not cancel the load the others wait for.
        return await asyncio.shield(slot.loading)

    async def run(self, name: str, fn: Callable[[BioModel], T], on_turn: Callable[[], None] | None = None) -> T:
        """Run ``fn(model)`` in a worker thread, one call at a time per model.

        Args:
            on_turn: called on the event loop once the model is this call's, just before `fn` starts.
        """
        model = await self.get(name)
        slot = self._slots[name]

        def locked() -> T:
            with slot.running:
                return fn(model)

        async with slot.queue:
            if on_turn is not None:
                on_turn()
            return await self._in_thread(locked)

    async def close(self) -> None:
        for name, slot in self._slots.items():
            if slot.model is not None:
                try:
                    await self._in_thread(slot.model.close)
                except Exception:  # closing one model must not keep the others open
                    logger.exception("closing %s failed", name)
                slot.model = None


def embeddings_to_json(result: Any) -> dict[str, Any]:
    """`Embeddings.to_dict()`, with every layer under ``by_layer`` when several were asked for."""
    out = result.to_dict()
    if len(result.layers) > 1:
        out["by_layer"] = {
            str(layer): [np.asarray(a).tolist() for a in arrays] if isinstance(arrays, list) else arrays.tolist()
            for layer, arrays in result.by_layer.items()
        }
    return out


def _jsonable(result: Any) -> Any:
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if isinstance(result, np.ndarray):
        return result.tolist()
    if isinstance(result, (list, tuple)):
        return [_jsonable(r) for r in result]
    return result


class InProcessBackend(BackendBase):
    """Runs `bionemo_lite` models in this process."""

    kind = "inprocess"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self._executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="bionemo-model")
        self.pool = ModelPool(settings, self._executor)
        self.batcher = EmbedBatcher(settings.batch_window_ms / 1000.0, settings.max_batch_records)
        self._started = False
        self._closed = False

    async def start(self, preload: Sequence[str] = ()) -> None:
        for name in preload:
            await self.pool.get(name)
        self._started = True

    async def ready(self) -> bool:
        return self._started and not self._closed

    def model_facts(self, spec: ModelSpec) -> dict[str, Any]:
        counters = self.batcher.counters(spec.name)
        return {"loaded": self.pool.loaded(spec.name), "loads": self.pool.loads(spec.name),
                "batched_calls": counters.calls, "batched_requests": counters.requests}

    async def _call(self, name: str, verb: str, inputs: Any, options: dict[str, Any],
                    to_json: Callable[[Any], Any] = _jsonable) -> Any:
        def call(model: BioModel) -> Any:
            method = verb_method(model, verb)
            result = method(inputs, **bind_options(method, options, name))
            # Converting arrays to lists is CPU work too: keep it off the event loop.
            return to_json(result)

        return await self.pool.run(name, call)

    async def embed(self, name: str, request: EmbedRequest) -> dict[str, Any]:
        options = {"layer": request.layer, "pooling": request.pooling,
                   "on_too_long": "truncate" if request.truncate else None}
        records = request.records()  # duplicate ids fail here, alone, before any merging

        def runner(model: BioModel, requests: list[list[Any]]) -> Any:
            method = verb_method(model, "embed")
            kwargs = bind_options(method, options, name)
            return run_group(lambda recs: method(recs, **kwargs), embeddings_to_json, requests)

        layer = tuple(request.layer) if isinstance(request.layer, list) else request.layer
        key = (layer, request.pooling, request.truncate)
        return await self.batcher.submit(name, key, records, runner, lambda job, on_turn: self.pool.run(name, job, on_turn))

    async def score(self, name: str, request: ScoreRequest) -> dict[str, Any]:
        options = {"method": request.method, "mutations": request.mutations,
                   "on_too_long": "truncate" if request.truncate else None}
        return await self._call(name, "score", request.records(), options)

    async def generate(self, name: str, request: GenerateRequest) -> dict[str, Any]:
        return await self._call(name, "generate", request.records(), request.options())

    async def contacts(self, name: str, request: ContactsRequest) -> dict[str, Any]:
        options = {"on_too_long": "truncate" if request.truncate else None}
        return {"model": name, "contacts": await self._call(name, "contacts", request.records(), options)}

    async def fold(self, name: str, request: FoldRequest) -> dict[str, Any]:
        return await self._call(name, "fold", request.sequence, request.options())

    async def decode(self, name: str, request: DecodeRequest) -> dict[str, Any]:
        hiddens = np.asarray(request.hiddens, dtype=np.float32)
        mask = np.asarray(request.mask, dtype=bool)
        options = request.options()

        def call(model: BioModel) -> dict[str, Any]:
            method = verb_method(model, "decode")
            result = _jsonable(method(hiddens, mask, **bind_options(method, options, name, positional=2)))
            if isinstance(result, dict):
                return {"model": name, **result}
            return {"model": name, "generated": result}

        return await self.pool.run(name, call)

    async def close(self) -> None:
        self._closed = True
        await self.pool.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
