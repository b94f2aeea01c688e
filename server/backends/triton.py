"""The Triton backend: the same routes and JSON, answered by Triton Inference Server(s).

    bionemo-lite serve --backend triton --triton-url 127.0.0.1:8010
    BIONEMO_LITE_BACKEND=triton BIONEMO_LITE_TRITON_URL=gpu1:8011,gpu2:8011 BIONEMO_LITE_TRITON_PROTOCOL=grpc \\
        bionemo-lite serve

Models are exported with ``bionemo-lite export`` and served by ``bionemo-lite
triton serve`` (or NVIDIA's container); this process holds no model. Routes
validate protein records before they get here; what only the model can check
(an unparsable SMILES, an option the verb does not take) comes back from
Triton as the model's own `InvalidInputError`, so the answer is the same 422
as in-process.

Several replicas (comma-separated URLs, e.g. one Triton per GPU or node) share
the requests in turn; a replica that cannot be reached is skipped for that
request. When none answers, requests get 503 (``backend_unavailable``) and the
readiness probe says so. A failed connection is rebuilt for the next request,
so the API answers again as soon as Triton is back, without a restart (gRPC
channels would otherwise sit in their reconnect back-off for up to two minutes).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from bionemo_lite.errors import BackendUnavailableError
from bionemo_lite.spec import ModelSpec
from bionemo_lite.triton.client import AsyncTritonClient
from bionemo_lite.triton.ports import TRITON_PORTS
from bionemo_lite.triton.protocol import split_model_name

from .base import BackendBase
from .inprocess import embeddings_to_json

if TYPE_CHECKING:
    from ..schemas import DecodeRequest, EmbedRequest, FoldRequest, GenerateRequest, ScoreRequest
    from ..settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_PORTS = {"http": TRITON_PORTS["http"], "grpc": TRITON_PORTS["grpc"]}  # what `triton serve` binds


def parse_urls(value: str | None, protocol: str) -> list[str]:
    """``"a:8011, b:8011"`` -> ``["a:8011", "b:8011"]``; None -> the local port `triton serve` binds."""
    urls = [u.strip() for u in (value or "").split(",") if u.strip()]
    return urls or [f"127.0.0.1:{DEFAULT_PORTS[protocol]}"]


class _Replica:
    """One Triton server: its URL and a client built lazily inside the running loop.

    A client whose connection failed is retired: new calls get a fresh client at
    once, and the old one is closed when its last in-flight call returns (closing
    it earlier would cancel the calls of concurrent requests).
    """

    def __init__(self, url: str, protocol: str):
        self.url = url
        self.protocol = protocol
        self.client: AsyncTritonClient | None = None
        self._in_flight: dict[AsyncTritonClient, int] = {}

    def get(self) -> AsyncTritonClient:
        if self.client is None:
            self.client = AsyncTritonClient(self.url, self.protocol)  # type: ignore[arg-type]
            self._in_flight[self.client] = 0
        return self.client

    async def call(self, fn: Callable[[AsyncTritonClient], Awaitable[T]]) -> T:
        client = self.get()
        self._in_flight[client] += 1
        try:
            return await fn(client)
        except BackendUnavailableError:
            self.retire(client)
            raise
        finally:
            self._in_flight[client] -= 1
            if client is not self.client and self._in_flight[client] == 0:
                await self._close(client)

    def retire(self, client: AsyncTritonClient) -> None:
        """Stop handing out `client`; the caller closes it once idle."""
        if client is self.client:
            self.client = None

    async def probe(self) -> bool:
        """Whether the server is ready; a client that finds it not ready is retired (and closed if idle)."""
        client = self.get()
        self._in_flight[client] += 1
        try:
            ok = await client.ready()
        finally:
            self._in_flight[client] -= 1
        if not ok:
            self.retire(client)
            if self._in_flight[client] == 0:
                await self._close(client)
        return ok

    async def _close(self, client: AsyncTritonClient) -> None:
        self._in_flight.pop(client, None)
        try:
            await client.close()
        except Exception:  # closing a broken connection may fail too; it is discarded anyway
            logger.debug("closing the Triton client for %s failed", self.url, exc_info=True)

    async def close(self) -> None:
        for client in list(self._in_flight):
            await self._close(client)
        self.client = None


class TritonBackend(BackendBase):
    """Forwards every verb (embed, score, generate, decode, fold) to the Triton models exported by
    `bionemo_lite.triton.export`, and returns the JSON the in-process backend returns."""

    kind = "triton"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.protocol = settings.triton_protocol
        self.replicas = [_Replica(url, self.protocol) for url in parse_urls(settings.triton_url, self.protocol)]
        self._turn = itertools.count()
        self._served: dict[str, set[str]] = {}

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    async def _call(self, fn: Callable[[AsyncTritonClient], Awaitable[T]]) -> T:
        """Run `fn` on the next replica in turn, moving on while replicas are unreachable."""
        start = next(self._turn)
        failures: list[str] = []
        for k in range(len(self.replicas)):
            replica = self.replicas[(start + k) % len(self.replicas)]
            try:
                return await replica.call(fn)
            except BackendUnavailableError as exc:
                failures.append(str(exc))
        if len(failures) == 1:
            raise BackendUnavailableError(failures[0])
        raise BackendUnavailableError(f"no Triton replica could answer ({', '.join(self.urls)}): " + " | ".join(failures))

    async def start(self, preload: Sequence[str] = (), download: Sequence[str] = ()) -> None:
        """Check Triton once; start anyway when it is down (requests answer 503 until it is up).

        Triton holds the weights, so nothing is downloaded here (`download` is ignored)."""
        if not await self.ready():
            logger.warning("Triton at %s (%s) is not ready yet; requests will answer 503 until it is",
                           ", ".join(self.urls), self.protocol)
            return
        served = await self._served_models()
        for name in preload:
            if name not in served:
                logger.warning("preload: Triton at %s does not serve %s", ", ".join(self.urls), name)

    async def ready(self) -> bool:
        """True when at least one replica is ready."""
        return any(await asyncio.gather(*(r.probe() for r in self.replicas)))

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
        result = await self._call(
            lambda c: c.embed(name, records, request.layer, request.pooling, on_too_long=request.on_too_long))
        # Arrays to JSON lists is CPU work: keep it off the event loop.
        return await asyncio.to_thread(embeddings_to_json, result)

    async def score(self, name: str, request: ScoreRequest) -> dict[str, Any]:
        records = request.records()
        options = request.verb_options().keywords()
        result = await self._call(lambda c: c.score(name, records, **options))
        return result.to_dict()

    async def generate(self, name: str, request: GenerateRequest) -> dict[str, Any]:
        records = request.records()
        result = await self._call(lambda c: c.generate(name, records, **request.options()))
        return result.to_dict()

    async def fold(self, name: str, request: FoldRequest) -> dict[str, Any]:
        result = await self._call(lambda c: c.fold(name, request.sequence, **request.options()))
        return await asyncio.to_thread(result.to_dict)

    async def decode(self, name: str, request: DecodeRequest) -> dict[str, Any]:
        hiddens = np.asarray(request.hiddens, dtype=np.float32)
        mask = np.asarray(request.mask, dtype=bool)
        generated = await self._call(lambda c: c.decode(name, hiddens, mask, **request.options()))
        return {"model": name, "generated": generated}

    async def close(self) -> None:
        for replica in self.replicas:
            await replica.close()
