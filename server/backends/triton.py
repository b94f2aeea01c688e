"""The Triton provider: the same routes and JSON, answered by Triton Inference Server(s).

    bionemo-lite serve --backend triton --triton-url 127.0.0.1:8010
    BIONEMO_LITE_BACKEND=triton BIONEMO_LITE_TRITON_URL=gpu1:8011,gpu2:8011 BIONEMO_LITE_TRITON_PROTOCOL=grpc \\
        bionemo-lite serve

Models are exported with ``bionemo-lite export`` and served by ``bionemo-lite
triton serve`` (or NVIDIA's container); this process holds no model: a request
runs on a `RemoteModel`, the verb Protocols over a `TritonClient`, in a worker
thread. Routes validate protein records before they get here; what only the
model can check (an unparsable SMILES, an option the verb does not take) comes
back from Triton as the model's own `InvalidInputError`, so the answer is the
same 422 as in-process. Triton's dynamic batcher merges concurrent requests, so
nothing is merged here.

Several replicas (comma-separated URLs, e.g. one Triton per GPU or node) share
the requests in turn; a replica that cannot be reached is skipped for that
request. When none answers, requests get 503 (``backend_unavailable``) and the
readiness probe says so. A failed replica's connections are dropped, so the next
request connects afresh and the API answers again as soon as Triton is back,
without a restart (gRPC channels would otherwise sit in their reconnect back-off
for up to two minutes).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from bionemo_lite.cancellation import CancelToken, run_with_token
from bionemo_lite.errors import BackendUnavailableError, UnsupportedVerbError
from bionemo_lite.registry import get_spec
from bionemo_lite.spec import ModelSpec
from bionemo_lite.triton.client import TritonClient
from bionemo_lite.triton.ports import TRITON_PORTS
from bionemo_lite.triton.protocol import SERVABLE_VERBS, split_model_name
from bionemo_lite.triton.remote import RemoteModel

from .base import LiveCalls, ProviderBase, Readiness

if TYPE_CHECKING:
    from ..settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_PORTS = {"http": TRITON_PORTS["http"], "grpc": TRITON_PORTS["grpc"]}  # what `triton serve` binds
# Threads waiting on Triton: network waits, not CPU work, so many more than the in-process model threads.
CALL_THREADS = 64


def parse_urls(value: str | None, protocol: str) -> list[str]:
    """``"a:8011, b:8011"`` -> ``["a:8011", "b:8011"]``; None -> the local port `triton serve` binds."""
    urls = [u.strip() for u in (value or "").split(",") if u.strip()]
    return urls or [f"127.0.0.1:{DEFAULT_PORTS[protocol]}"]


class _Replica:
    """One Triton server: its URL and the idle clients of its worker threads.

    A `TritonClient` serves one thread at a time, so each call takes an idle one
    (or opens one) and gives it back. A failure drops every client of the
    replica: they all talk to the same server, and a fresh connection is what
    recovery needs. Each worker thread keeps its own idle client: the HTTP
    client's sockets (gevent) belong to the thread that opened them, and used
    from another thread they fail with "Cannot switch to a different thread".
    """

    def __init__(self, url: str, protocol: str):
        self.url = url
        self.protocol = protocol
        self._idle: dict[int, TritonClient] = {}  # worker thread id -> its idle client
        self._generation = 0
        self._lock = threading.Lock()

    def call(self, fn: Callable[[TritonClient], T]) -> T:
        """``fn(client)`` on an idle client of this replica (worker thread)."""
        with self._lock:
            client = self._idle.pop(threading.get_ident(), None)
            generation = self._generation
        if client is None:
            client = TritonClient(self.url, self.protocol)  # type: ignore[arg-type]
        try:
            result = fn(client)
        except BackendUnavailableError:
            self._drop(client)
            raise
        except BaseException:
            self._give_back(client, generation)
            raise
        self._give_back(client, generation)
        return result

    def ready(self) -> bool:
        """Whether the server is ready; one that is not has its clients dropped."""
        ok = self.call(lambda client: client.ready())
        if not ok:
            self._drop(None)
        return ok

    def _give_back(self, client: TritonClient, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._idle[threading.get_ident()] = client
                return
        _close(client, self.url)

    def _drop(self, client: TritonClient | None) -> None:
        with self._lock:
            self._generation += 1
            stale, self._idle = list(self._idle.values()), {}
        for c in [*stale, *([client] if client is not None else [])]:
            _close(c, self.url)

    def close(self) -> None:
        self._drop(None)


def _close(client: TritonClient, url: str) -> None:
    try:
        client.close()
    except Exception:  # closing a broken connection may fail too; it is discarded anyway
        logger.debug("closing a Triton client for %s failed", url, exc_info=True)


class TritonProvider(ProviderBase):
    """Hands out `RemoteModel`s on the replicas in turn, for every verb the export serves
    (embed, score, generate, decode, fold)."""

    kind = "triton"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.protocol = settings.triton_protocol
        self.replicas = [_Replica(url, self.protocol) for url in parse_urls(settings.triton_url, self.protocol)]
        self._turn = itertools.count()
        self._served: dict[str, set[str]] = {}
        self._executor = ThreadPoolExecutor(max_workers=CALL_THREADS, thread_name_prefix="bionemo-triton")
        self._live = LiveCalls()

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    def _on_a_replica(self, fn: Callable[[TritonClient], T]) -> T:
        """``fn(client)`` on the next replica in turn, moving on while replicas are unreachable (worker thread)."""
        start = next(self._turn)
        failures: list[str] = []
        for k in range(len(self.replicas)):
            replica = self.replicas[(start + k) % len(self.replicas)]
            try:
                return replica.call(fn)
            except BackendUnavailableError as exc:
                failures.append(str(exc))
        if len(failures) == 1:
            raise BackendUnavailableError(failures[0])
        raise BackendUnavailableError(
            f"no Triton replica could answer ({', '.join(self.urls)}): " + " | ".join(failures))

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _check_verb(self, name: str, verb: str) -> ModelSpec:
        spec = get_spec(name)
        if verb not in SERVABLE_VERBS:
            served = [v for v in spec.verbs if v != verb]
            raise UnsupportedVerbError(f"{name} (on the {self.kind} backend)", verb, served)
        return spec

    async def model(self, name: str) -> RemoteModel:
        """`name` on the next replica, over a client of its own (the caller closes it)."""
        replica = self.replicas[next(self._turn) % len(self.replicas)]
        return RemoteModel(get_spec(name), TritonClient(replica.url, self.protocol))  # type: ignore[arg-type]

    async def run(self, name: str, verb: str, job: Callable[[Any], T]) -> T:
        """``job(RemoteModel)`` in a worker thread, on the next replica that answers.

        A request given up on (client gone, deadline, shutdown) stops waiting at once; its
        thread does not start when still queued, and stops at the job's next batch boundary.
        """
        spec = self._check_verb(name, verb)
        token = CancelToken()

        def call() -> T:
            return self._on_a_replica(lambda client: job(RemoteModel(spec, client)))

        with self._live.tracking(token):
            return await self._in_thread(lambda: run_with_token(token, call))

    async def start(self, preload: Sequence[str] = (), download: Sequence[str] = ()) -> None:
        """Check Triton once; start anyway when it is down (requests answer 503 until it is up).

        Triton holds the weights, so nothing is downloaded here (`download` is ignored)."""
        if not await self._ready():
            logger.warning("Triton at %s (%s) is not ready yet; requests will answer 503 until it is",
                           ", ".join(self.urls), self.protocol)
            return
        served = await self._served_models()
        for name in preload:
            if name not in served:
                logger.warning("preload: Triton at %s does not serve %s", ", ".join(self.urls), name)

    async def _ready(self) -> bool:
        """True when at least one replica is ready."""
        return any(await asyncio.gather(*(self._in_thread(r.ready) for r in self.replicas)))

    async def readiness(self) -> Readiness:
        if await self._ready():
            return Readiness("ready")
        return Readiness("not_ready", f"the {self.kind} backend is not ready")

    async def _served_models(self) -> dict[str, set[str]]:
        """``{registered name: verbs}`` of the models Triton has ready."""
        index = await self._in_thread(lambda: self._on_a_replica(lambda client: client.models()))
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

    async def close(self) -> None:
        self._live.cancel_all("the server is shutting down")
        for replica in self.replicas:
            replica.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
