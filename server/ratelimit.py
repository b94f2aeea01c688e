"""Per-client limits: requests per minute and requests in flight, answered 429 with ``Retry-After``.

    HTTP/1.1 429 Too Many Requests
    Retry-After: 12
    {"error": "too_many_requests", "detail": "key 'alice' made its 60 requests of the last minute; ...",
     "limit": "requests_per_minute", "value": 60, "retry_after": 12, "request_id": "..."}

A client is an API key (named by `ApiKeyAuth` in ``scope["state"]``) or, when
keys are off and the setting `limit_by_address` is on, a client address. The
rate window is the `limits` library's moving window (each request counts for
exactly one minute, no burst at window edges); in-flight requests are counted
here, on the event loop, until their answer has been sent.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import HTTP_CODES, error_response
from .responses import SafeJSONResponse

CLIENT_STATE = "api_key"  # scope["state"] entry set by the key check: a `Client`


@dataclass(frozen=True)
class Limits:
    """What one client may do; 0 means no limit."""

    requests_per_minute: int
    max_in_flight: int


@dataclass(frozen=True)
class Client:
    """Who a request is counted against, in words for error messages (``key 'alice'``, ``client 10.0.0.7``)."""

    id: str
    label: str
    limits: Limits


@dataclass(frozen=True)
class Refusal:
    limit: str
    value: int
    retry_after: int
    detail: str


class ClientLimiter:
    """The counters of every client of one server process."""

    def __init__(self) -> None:
        self._window = MovingWindowRateLimiter(MemoryStorage())
        self._in_flight: Counter[str] = Counter()

    def admit(self, client: Client) -> Refusal | None:
        """Take a slot for `client`'s request, or say which limit refuses it (nothing is counted then)."""
        limits = client.limits
        if limits.max_in_flight and self._in_flight[client.id] >= limits.max_in_flight:
            # When a slot frees is unknown; a second is the shortest honest wait.
            return Refusal("max_in_flight", limits.max_in_flight, 1,
                           f"{client.label} already has {self._in_flight[client.id]} requests in flight, its limit "
                           f"(max_in_flight {limits.max_in_flight}); retry when one has been answered")
        if limits.requests_per_minute:
            item = RateLimitItemPerMinute(limits.requests_per_minute)
            if not self._window.hit(item, client.id):
                reset_at = self._window.get_window_stats(item, client.id).reset_time
                wait = max(1, math.ceil(reset_at - time.time()))
                return Refusal("requests_per_minute", limits.requests_per_minute, wait,
                               f"{client.label} made its {limits.requests_per_minute} requests of the last minute "
                               f"(requests_per_minute); retry in {wait} s")
        self._in_flight[client.id] += 1
        return None

    def release(self, client: Client) -> None:
        self._in_flight[client.id] -= 1
        if self._in_flight[client.id] <= 0:
            del self._in_flight[client.id]


def too_many_requests(refusal: Refusal) -> SafeJSONResponse:
    response = error_response(429, HTTP_CODES[429], refusal.detail, limit=refusal.limit, value=refusal.value,
                              retry_after=refusal.retry_after)
    response.headers["Retry-After"] = str(refusal.retry_after)
    return response


class RateLimits:
    """ASGI middleware applying `ClientLimiter` to every request not on an open path.

    Args:
        defaults: the limits of a client address (when `by_address`).
        by_address: count requests without an API key per client address; otherwise they pass.
        is_open: paths never limited (health probes, metrics, docs).
    """

    def __init__(self, app: ASGIApp, limiter: ClientLimiter, defaults: Limits, by_address: bool,
                 is_open: Callable[[str], bool]):
        self.app = app
        self.limiter = limiter
        self.defaults = defaults
        self.by_address = by_address
        self.is_open = is_open

    def _client(self, scope: Scope) -> Client | None:
        client = scope.get("state", {}).get(CLIENT_STATE)
        if client is not None or not self.by_address:
            return client
        address = scope["client"][0] if scope.get("client") else "unknown"
        return Client(f"address:{address}", f"client {address}", self.defaults)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = self._client(scope) if scope["type"] == "http" and not self.is_open(scope["path"]) else None
        if client is None:
            await self.app(scope, receive, send)
            return
        refusal = self.limiter.admit(client)
        if refusal is not None:
            await too_many_requests(refusal)(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.limiter.release(client)
