"""A request id on every request: taken from ``X-Request-ID`` when sane, made up otherwise, echoed back.

Error bodies carry it (``"request_id"``) and the log lines about a failed
request name it, so a client's report can be matched with the server's log
without the body having to carry server paths or exception text.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
# Ids of the common tracing schemes (UUIDs, ULIDs, hex span ids) fit; anything longer or odd is replaced.
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=-]{0,127}")

_current: ContextVar[str | None] = ContextVar("bionemo_lite_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being answered (None outside a request)."""
    return _current.get()


def choose_request_id(incoming: str | None) -> str:
    """`incoming` when it is a plausible id, else a new random one."""
    if incoming is not None and _SANE.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestId:
    """Outermost middleware: sets the id for the request and adds ``X-Request-ID`` to its response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = choose_request_id(Headers(scope=scope).get(HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        token = _current.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER.encode()]
                message = {**message, "headers": [*headers, (HEADER.encode(), request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _current.reset(token)
