"""A request lives until it is answered, its client goes away, or its deadline passes.

Starlette does not cancel a handler whose client disconnected, so a long model call
would run to its end for nobody while holding its model. `RequestLifetime` runs the
handler as a task and watches the connection (ASGI ``http.disconnect``); on a
disconnect, or when ``request_timeout_s`` passes before the answer starts, it
cancels the handler. The providers turn that cancellation into the call's
`CancelToken` (`bionemo_lite.cancellation`): a queued call never starts, a running
one stops at its next batch boundary, and the model is free again. A deadline is
answered 504 with the project's error body; a disconnected client gets nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response
from .request_id import current_request_id

logger = logging.getLogger(__name__)

TIMEOUT_SETTING = "BIONEMO_LITE_REQUEST_TIMEOUT_S"
_VERB_PATH = re.compile(r"^/v1/models/(?P<name>[^/]+)/(?P<verb>[a-z]+)$")
_DISCONNECT: Message = {"type": "http.disconnect"}


def _has_body(scope: Scope) -> bool:
    headers = dict(scope.get("headers") or ())
    length = headers.get(b"content-length", b"0").strip() or b"0"
    return b"transfer-encoding" in headers or length != b"0"


class _Connection:
    """The request's `receive`, shared by the handler (the body) and the disconnect watch (the rest)."""

    def __init__(self, receive: Receive, has_body: bool):
        self._receive = receive
        self._body_done = asyncio.Event()
        if not has_body:
            self._body_done.set()
        self._empty_body_sent = has_body
        self.gone = asyncio.Event()

    async def receive(self) -> Message:
        """What the handler reads: the body as sent, then only the disconnect."""
        if not self._body_done.is_set():
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.gone.set()
            elif not message.get("more_body", False):
                self._body_done.set()
            return message
        if not self._empty_body_sent:  # a request without a body still reads one empty message
            self._empty_body_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return _DISCONNECT

    async def watch(self) -> None:
        """Return when the client has gone (or the server says so because the answer is out)."""
        await self._body_done.wait()  # until then the connection is the handler's to read
        while not self.gone.is_set():
            if (await self._receive())["type"] == "http.disconnect":
                self.gone.set()


class RequestLifetime:
    """ASGI middleware: cancel a request's handler on client disconnect or past its deadline (504).

    Args:
        timeout_s: seconds a request may take before its answer starts; None: no deadline.
    """

    def __init__(self, app: ASGIApp, timeout_s: float | None):
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        connection = _Connection(receive, _has_body(scope))
        started, answered = asyncio.Event(), asyncio.Event()

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.set()
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                answered.set()  # before sending: the "disconnect" the server reports after it is no client leaving
            await send(message)

        handler = asyncio.ensure_future(self.app(scope, connection.receive, tracking_send))
        watcher = asyncio.ensure_future(connection.watch())
        try:
            done, _ = await asyncio.wait({handler, watcher}, timeout=self.timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            if handler in done or answered.is_set() or (started.is_set() and watcher not in done):
                await handler  # answered (or answering: a started response is not cut by the deadline)
                return
            handler.cancel()
            await asyncio.gather(handler, return_exceptions=True)  # let it unwind: its model call is cancelled
            if watcher in done:
                logger.info("request %s: client disconnected from %s %s; its work was cancelled",
                            current_request_id(), scope.get("method"), scope.get("path"))
                return
            if not started.is_set():  # it may have begun answering while it unwound: nothing can follow that
                await self._deadline_response(scope, connection.receive, send)
        except asyncio.CancelledError:  # the server is shutting down past its drain bound
            handler.cancel()
            await asyncio.gather(handler, return_exceptions=True)
            if not started.is_set():  # a clear answer rather than a dropped connection
                await error_response(503, "shutting_down", "the server is shutting down and cancelled this "
                                     "request; retry it (on another replica, or once the service is back)",
                                     )(scope, connection.receive, send)
            raise
        finally:
            watcher.cancel()

    async def _deadline_response(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        logger.warning("request %s: %s %s passed its deadline of %g s; cancelled", current_request_id(),
                       scope.get("method"), path, self.timeout_s)
        match = _VERB_PATH.match(path)
        hint = (f"; for long work run a batch job instead (`bionemo-lite {match['verb']} {match['name']} "
                "INPUT -o OUTPUT`)" if match else "")
        detail = (f"the request was not answered within {self.timeout_s:g} s and was cancelled; raise the deadline "
                  f"with {TIMEOUT_SETTING}{hint}")
        await error_response(504, "deadline_exceeded", detail, timeout_s=self.timeout_s,
                             setting=TIMEOUT_SETTING)(scope, receive, send)
