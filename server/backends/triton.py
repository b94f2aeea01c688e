"""The Triton backend: the same routes and JSON, answered by a Triton Inference Server.

    bionemo-lite serve --backend triton --triton-url 127.0.0.1:8001 --triton-protocol grpc
    BIONEMO_LITE_BACKEND=triton BIONEMO_LITE_TRITON_URL=127.0.0.1:8000 bionemo-lite serve

Models are exported with ``bionemo-lite export`` and served by ``bionemo-lite
triton serve`` (or NVIDIA's container); this process holds no model. Routes
validate requests before they get here, so Triton only sees clean records.

When Triton cannot be reached, requests answer 503 (``backend_unavailable``)
and the readiness probe says so; the client is then rebuilt for the next
request, so the API answers again as soon as Triton is back (gRPC channels
would otherwise sit in their reconnect back-off for up to two minutes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from bionemo_lite.errors import BackendUnavailableError
from bionemo_lite.spec import ModelSpec
from bionemo_lite.triton.client import AsyncTritonClient
from bionemo_lite.triton.protocol import split_model_name

from .base import BackendBase
from .inprocess import embeddings_to_json

if TYPE_CHECKING:
    from ..schemas import EmbedRequest, GenerateRequest, ScoreRequest
    from ..settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}


class TritonBackend(BackendBase):
    """Forwards embed, score and generate to Triton models exported by `bionemo_lite.triton.export`."""

    kind = "triton"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.protocol = settings.triton_protocol
        self.url = settings.triton_url or f"127.0.0.1:{DEFAULT_PORTS[self.protocol]}"
        self._client: AsyncTritonClient | None = None
        self._served: dict[str, set[str]] = {}

    def _get_client(self) -> AsyncTritonClient:
        # Created lazily inside the running loop (the aio clients bind to it).
        if self._client is None:
            self._client = AsyncTritonClient(self.url, self.protocol)
        return self._client

    async def _reset(self, client: AsyncTritonClient) -> None:
        """Drop a client whose connection failed; the next call builds a fresh one."""
        if self._client is client:
            self._client = None
            try:
                await client.close()
            except Exception:  # closing a broken connection may fail too; it is discarded anyway
                logger.debug("closing the Triton client failed", exc_info=True)

    async def _call(self, fn: Callable[[AsyncTritonClient], Awaitable[T]]) -> T:
        client = self._get_client()
        try:
            return await fn(client)
        except BackendUnavailableError:
            await self._reset(client)
            raise

    async def start(self, preload: Sequence[str] = ()) -> None:
        """Check Triton once; start anyway when it is down (requests answer 503 until it is up)."""
        if not await self.ready():
            logger.warning("Triton at %s (%s) is not ready yet; requests will answer 503 until it is",
                           self.url, self.protocol)
            return
        served = await self._served_models()
        for name in preload:
            if "embed" not in served.get(name, set()) and not served.get(name):
                logger.warning("preload: Triton at %s does not serve %s", self.url, name)

    async def ready(self) -> bool:
        client = self._get_client()
        ok = await client.ready()
        if not ok:
            await self._reset(client)
        return ok

    async def _served_models(self) -> dict[str, set[str]]:
        """``{registered name: verbs}`` of the models Triton has ready."""
        index = await self._call(lambda c: c.models())
        served: dict[str, set[str]] = {}
        for entry in index:
            if entry.get("state") == "READY" and entry.get("name"):
                base, verb = split_model_name(str(entry["name"]))
                served.setdefault(base, set()).add(verb)
        self._served = served
        return served

    def model_facts(self, spec: ModelSpec) -> dict[str, Any]:
        verbs = self._served.get(spec.name, set())
        return {"loaded": bool(verbs), "triton_verbs": sorted(verbs)}

    async def models(self) -> list[dict[str, Any]]:
        try:
            await self._served_models()
        except BackendUnavailableError as exc:
            logger.warning("listing models without Triton: %s", exc)
            self._served = {}
        return await super().models()

    async def embed(self, name: str, request: EmbedRequest) -> dict[str, Any]:
        records = request.records()
        result = await self._call(lambda c: c.embed(
            name, records, request.layer, request.pooling, on_too_long="truncate" if request.truncate else "error"
        ))
        # Arrays to JSON lists is CPU work: keep it off the event loop.
        return await asyncio.to_thread(embeddings_to_json, result)

    async def score(self, name: str, request: ScoreRequest) -> dict[str, Any]:
        records = request.records()
        options = {"mutations": request.mutations, "on_too_long": "truncate" if request.truncate else None}
        options = {k: v for k, v in options.items() if v is not None}
        result = await self._call(lambda c: c.score(name, records, request.method, **options))
        return result.to_dict()

    async def generate(self, name: str, request: GenerateRequest) -> dict[str, Any]:
        records = request.records()
        result = await self._call(lambda c: c.generate(name, records, **request.options()))
        return result.to_dict()

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
