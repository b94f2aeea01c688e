"""Prometheus metrics of one app: its own registry, the metric objects, the ASGI middleware and the hooks.

    GET /v1/metrics      # text exposition format (`server.routes.metrics`)

Each app owns a `ServiceMetrics` (``app.state.metrics``) with its own
`CollectorRegistry`, so several apps in one process (tests) never share or
collide. Label values are bounded: a route is its template
(``/v1/models/{name}/embed``, never the raw path; ``unmatched`` for paths no
route serves) and a model is a registered name, else ``other``.

The providers call the hooks below (`observe_batch`, `observe_load`, `queued`,
`computed`) as single calls; each takes ``None`` for "no metrics" so a
provider built without an app (tests, tools) needs no stand-in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bionemo_lite.errors import UnknownModelError
from bionemo_lite.registry import get_spec

T = TypeVar("T")

PREFIX = "bionemo_lite"
OTHER = "other"  # any model name or method outside the known ones
NO_MODEL = "none"
UNMATCHED_ROUTE = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds: health probes answer in milliseconds, a fold on CPU can take minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def model_label(name: str | None) -> str:
    """`name` when it is a registered model, ``other`` for any other text (bounded label values)."""
    if not name:
        return NO_MODEL
    try:
        get_spec(name)
    except UnknownModelError:
        return OTHER
    return name


class ServiceMetrics:
    """The metrics of one app, in a registry of its own.

    Attributes:
        registry: what ``GET /v1/metrics`` renders.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(f"{PREFIX}_http_requests", "HTTP requests answered, by route template, model and "
                                "status code.", ["method", "route", "model", "status"], registry=r)
        self.latency = Histogram(f"{PREFIX}_http_request_duration_seconds", "Time from a request's arrival to the "
                                 "end of its answer.", ["method", "route", "model"], buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.batch_requests = Histogram(f"{PREFIX}_embed_batch_requests", "Embed requests merged into one model "
                                        "call.", ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.batch_records = Histogram(f"{PREFIX}_embed_batch_records", "Records in one merged embed model call.",
                                       ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge(f"{PREFIX}_model_queue_depth", "Model calls waiting for their (loaded) model to be "
                                 "free; a merged embed call counts once.", ["model"], registry=r)
        self.in_flight = Gauge(f"{PREFIX}_model_calls_in_flight", "Model calls being computed now.", ["model"],
                               registry=r)
        self.load_seconds = Histogram(f"{PREFIX}_model_load_seconds", "Time to load a model's weights (successful "
                                      "loads).", ["model"], buckets=LOAD_BUCKETS, registry=r)

    def render(self) -> bytes:
        """The registry in Prometheus' text exposition format."""
        return generate_latest(self.registry)


# ---------------------------------------------------------------- hooks for the providers

def observe_batch(metrics: ServiceMetrics | None, model: str, requests: int, records: int) -> None:
    """One merged embed model call of `requests` requests holding `records` records."""
    if metrics is not None:
        label = model_label(model)
        metrics.batch_requests.labels(label).observe(requests)
        metrics.batch_records.labels(label).observe(records)


def observe_load(metrics: ServiceMetrics | None, model: str, started: float) -> None:
    """A load of `model` that began at ``time.perf_counter()`` value `started` has just succeeded."""
    if metrics is not None:
        metrics.load_seconds.labels(model_label(model)).observe(time.perf_counter() - started)


@asynccontextmanager
async def queued(metrics: ServiceMetrics | None, model: str, lock: asyncio.Lock) -> AsyncIterator[None]:
    """Hold `lock` (a model's turn), counting the wait in the queue depth; a waiter that is
    cancelled leaves the queue too."""
    gauge = metrics.queue_depth.labels(model_label(model)) if metrics is not None else None
    if gauge is not None:
        gauge.inc()
    try:
        await lock.acquire()
    finally:
        if gauge is not None:
            gauge.dec()
    try:
        yield
    finally:
        lock.release()


def computed(metrics: ServiceMetrics | None, model: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, counted as in flight while it runs (called in the worker thread)."""
    if metrics is None:
        return fn(*args)
    with metrics.in_flight.labels(model_label(model)).track_inprogress():
        return fn(*args)


# ---------------------------------------------------------------- HTTP middleware

def route_label(scope: Scope) -> str:
    """The template of the route that answered (``/v1/models/{name}/embed``), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class HttpMetrics:
    """Counts every HTTP request and times it, by method, route template, model and status.

    Placed outside `UnhandledErrors`, so a bug's 500 is counted as one.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when nothing was answered

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            # The router put the matched route and its parameters into this same scope.
            route = route_label(scope)
            model = model_label(scope.get("path_params", {}).get("name")) if route != UNMATCHED_ROUTE else NO_MODEL
            method = scope.get("method") if scope.get("method") in METHODS else OTHER
            self.metrics.requests.labels(method, route, model, str(status)).inc()
            self.metrics.latency.labels(method, route, model).observe(time.perf_counter() - started)
