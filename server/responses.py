"""JSON answers that never fail on NaN/inf and are rendered off the event loop when large."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool


def _finite(value: Any) -> Any:
    """NaN and infinities become null: strict JSON has no literal for them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def render_json(content: Any) -> bytes:
    """Compact JSON bytes; the NaN clean-up pass runs only when the fast path refuses."""
    try:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        text = json.dumps(_finite(content), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8")


class SafeJSONResponse(JSONResponse):
    """The app's default response class."""

    def render(self, content: Any) -> bytes:
        return render_json(content)


async def json_response(content: Any, status_code: int = 200) -> Response:
    """A JSON response rendered in a worker thread (embeddings can be megabytes)."""
    body = await run_in_threadpool(render_json, content)
    return Response(body, status_code=status_code, media_type="application/json")
