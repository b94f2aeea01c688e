"""Model providers: where the routes get the model a request runs on.

A provider hands out verb-Protocol objects (`bionemo_lite.verbs`): a loaded
`BioModel` (`inprocess`) or a `RemoteModel` on a Triton replica (`triton`). A
route builds the request's typed options and runs them on the model in a worker
thread, through the provider, and nothing else:

    result = await provider.run(name, "score", lambda model: options.run(model, records).to_dict())

Routes have already checked, before that, that the model exists and has the
verb, that the request is within the server's limits and (for protein inputs)
that every record is valid and short enough. What goes wrong after is a
`bionemo_lite` error (`InvalidInputError` -> 422, `WeightsNotFoundError` /
`CheckpointError` / `BackendUnavailableError` -> 503).

A route whose request is given up on (client gone, deadline passed, shutdown:
`server.lifetime`) is cancelled while it awaits `run`; the provider then cancels
the call's `CancelToken` (`LiveCalls`), so a queued call never starts and a
running one stops at its next batch boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from bionemo_lite.cancellation import CancelToken
from bionemo_lite.records import Record
from bionemo_lite.registry import list_models
from bionemo_lite.results import Embeddings
from bionemo_lite.spec import ModelSpec
from bionemo_lite.verbs import EmbedOptions, Named
from bionemo_lite.weights import weights_available

if TYPE_CHECKING:
    from ..settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class Readiness:
    """What the readiness probe answers.

    Attributes:
        status: ``"ready"``, ``"loading"`` (models still downloading or loading, none failed)
            or ``"not_ready"``.
        detail: one sentence; for models that cannot load it names each and its fix.
        missing: `Problem.to_dict()` of each model that cannot be served (model, file, reason, fix).
        loading: models still being downloaded or loaded.
    """

    status: str
    detail: str | None = None
    missing: tuple[dict[str, Any], ...] = ()
    loading: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def to_dict(self, backend: str) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "backend": backend, "detail": self.detail}
        if not self.ready:
            body.update(missing=list(self.missing), loading=list(self.loading))
        return body


@runtime_checkable
class ModelProvider(Protocol):
    """What the routes need from wherever models run (every method is awaited on the event loop)."""

    kind: str
    """``"inprocess"``, ``"triton"``, ... (shown by the readiness probe)."""

    async def start(self, preload: Sequence[str] = (), download: Sequence[str] = ()) -> None:
        """Get ready to serve; load `preload` now rather than on first use (in the background
        where loading takes a while), fetching those in `download` into the cache first if missing."""
        ...

    async def model(self, name: str) -> Named:
        """The model `name` as an object implementing the Protocols of its verbs (loaded off the event loop)."""
        ...

    async def run(self, name: str, verb: str, job: Callable[[Any], T]) -> T:
        """``job(model)`` in a worker thread, `model` serving `verb`, as this provider schedules model
        calls (in-process: one call at a time per model; Triton: the next replica in turn)."""
        ...

    async def embed(self, name: str, options: EmbedOptions, records: list[Record]) -> dict[str, Any]:
        """`embeddings_to_json` of ``options.run(model, records)``; the provider may merge concurrent
        requests with equal options into one model call (see `batcher`)."""
        ...

    async def readiness(self) -> Readiness:
        """Whether requests can be answered, with the reasons: what is missing and how to fix it,
        what is still loading."""
        ...

    async def models(self) -> list[dict[str, Any]]:
        """One entry per registered model: `describe_model` plus the provider's facts (``loaded``...)."""
        ...

    async def close(self) -> None:
        """Release models, threads and connections."""
        ...


class LiveCalls:
    """The cancel tokens of a provider's queued and running model calls.

    A request whose handler is cancelled (client gone, deadline passed, shutdown)
    cancels its token, so its worker thread stops at the next batch boundary
    (`bionemo_lite.cancellation`) instead of holding the model to the end.
    """

    def __init__(self) -> None:
        self._tokens: set[CancelToken] = set()

    @contextlib.contextmanager
    def tracking(self, token: CancelToken) -> Iterator[CancelToken]:
        """Within the block `token` is live; the block's cancellation cancels it."""
        self._tokens.add(token)
        try:
            yield token
        except asyncio.CancelledError:
            token.cancel("the request was cancelled (client gone, deadline passed or server shutting down)")
            raise
        finally:
            self._tokens.discard(token)

    def cancel_all(self, reason: str) -> None:
        for token in list(self._tokens):
            token.cancel(reason)


def describe_model(spec: ModelSpec, settings: Settings, **facts: Any) -> dict[str, Any]:
    """The `/v1/models` entry of `spec`: its card (without the config), whether its
    weights can be found with this server's settings, and provider facts such as ``loaded``."""
    entry = spec.to_dict()
    entry.pop("config", None)
    entry["weights_available"] = weights_available(spec, settings.weights.get(spec.name))
    entry.update(facts)
    return entry


def embeddings_to_json(result: Embeddings) -> dict[str, Any]:
    """`Embeddings.to_dict()`, with every layer under ``by_layer`` when several were asked for."""
    out = result.to_dict()
    if len(result.layers) > 1:
        out["by_layer"] = {
            str(layer): [np.asarray(a).tolist() for a in arrays] if isinstance(arrays, list) else arrays.tolist()
            for layer, arrays in result.by_layer.items()
        }
    return out


class ProviderBase:
    """What providers share: the registry listing, and embed as one call per request.

    Subclasses implement `model`, `run` and `model_facts`.
    """

    kind = "base"

    def __init__(self, settings: Settings):
        self.settings = settings

    async def start(self, preload: Sequence[str] = (), download: Sequence[str] = ()) -> None:
        return None

    async def readiness(self) -> Readiness:
        return Readiness("ready")

    def model_facts(self, spec: ModelSpec) -> dict[str, Any]:
        """Provider facts added to a model's listing entry."""
        return {"loaded": False}

    async def models(self) -> list[dict[str, Any]]:
        return [describe_model(spec, self.settings, **self.model_facts(spec)) for spec in list_models()]

    async def run(self, name: str, verb: str, job: Callable[[Any], T]) -> T:
        raise NotImplementedError

    async def embed(self, name: str, options: EmbedOptions, records: list[Record]) -> dict[str, Any]:
        # Arrays to JSON lists is CPU work: in the worker thread too.
        return await self.run(name, "embed", lambda model: embeddings_to_json(options.run(model, records)))

    async def close(self) -> None:
        return None
