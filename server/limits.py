"""The request-body size limit, as plain ASGI middleware.

A declared ``Content-Length`` over the limit is refused before a byte of the
body is read; a body without one (chunked) is counted as it streams in and
refused as soon as it passes the limit, so a large upload never sits in memory.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response


def _too_large(limit: int, setting: str = "max_body_bytes") -> str:
    return f"request body is larger than this server's limit of {limit} bytes (setting {setting})"


class BodySizeLimit:
    """Answer 413 with a JSON error body for request bodies over `max_bytes` (or `paths`' own limit:
    ``{"/v1/jobs": max_upload_bytes}``, for the exact path)."""

    def __init__(self, app: ASGIApp, max_bytes: int, paths: dict[str, int] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.paths = dict(paths or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.paths.get(scope["path"], self.max_bytes)
        setting = "max_body_bytes" if scope["path"] not in self.paths else "max_upload_bytes"
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = error_response(413, "payload_too_large", _too_large(limit, setting), limit=limit)
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises HTTPExceptions met while reading the body, so the
                    # app's handler turns this into the same JSON 413.
                    raise HTTPException(413, detail=_too_large(limit, setting), headers={"Connection": "close"})
            return message

        await self.app(scope, counting_receive, send)
