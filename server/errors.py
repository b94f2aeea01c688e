"""One JSON shape for every error, and the status code of each `bionemo_lite` error.

    {"error": "invalid_input", "detail": "record 'p1', position 4: invalid residue 'J' ...",
     "record": "p1", "position": 4, "reason": "invalid residue 'J' ...", "request_id": "3f2a..."}

User mistakes are 4xx, missing or unreadable weights and an unreachable
Triton are 503 (the request may succeed later); only bugs are 500. Every body
carries the request's id. 5xx bodies name no server path and a 500 tells
nothing of the exception: the log has both, under the request id.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bionemo_lite.errors import (
    BackendUnavailableError,
    BionemoLiteError,
    CheckpointError,
    DownloadError,
    InvalidInputError,
    OverBudgetError,
    RequestCancelledError,
    RelaxUnavailableError,
    UnknownModelError,
    UnsupportedVerbError,
    WeightsNotFoundError,
)

from .problems import Problem, problem_of, redact_paths
from .request_id import current_request_id
from .responses import SafeJSONResponse
from .schemas import ErrorBody

logger = logging.getLogger(__name__)

HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 406: "not_acceptable",
              413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_request"}
HTTP_CODES.update({401: "unauthorized", 403: "forbidden", 429: "too_many_requests"})  # API keys and limits
INTERNAL_ERROR = "unexpected error while answering this request; the server log has the details under this request_id"


def error_response(status: int, error: str, detail: str, **extra: Any) -> SafeJSONResponse:
    """The JSON error answer, with the id of the request being answered."""
    return SafeJSONResponse({"error": error, "detail": detail, **extra, "request_id": current_request_id()},
                            status_code=status)


def _status_and_body(exc: BionemoLiteError) -> tuple[int, str, dict[str, Any]]:
    """Most specific class first: several errors derive from builtin ones too."""
    if isinstance(exc, InvalidInputError):
        return 422, "invalid_input", exc.to_dict()
    if isinstance(exc, OverBudgetError):  # server/budget.py
        return 422, "over_budget", exc.to_dict()
    if isinstance(exc, RequestCancelledError):  # its model call was cancelled (e.g. shutting down)
        return 503, "cancelled", {}
    if isinstance(exc, UnknownModelError):
        return 404, "unknown_model", {"model": exc.name, "close_matches": exc.close_matches}
    if isinstance(exc, UnsupportedVerbError):
        return 404, "unsupported_verb", {"model": exc.model, "verb": exc.verb, "verbs": sorted(exc.verbs)}
    if isinstance(exc, WeightsNotFoundError):
        return 503, "weights_not_found", {"model": exc.model, "filename": exc.filename}
    if isinstance(exc, CheckpointError):
        return 503, "model_unavailable", {}
    if isinstance(exc, BackendUnavailableError):
        return 503, "backend_unavailable", {}
    if isinstance(exc, DownloadError):
        return 503, "download_failed", {}
    if isinstance(exc, RelaxUnavailableError):  # the server lacks the [relax] extra
        return 501, "relax_unavailable", {}
    return 400, "bad_request", {}


def _model_problem(request: Request, exc: BionemoLiteError) -> Problem | None:
    """The path-free account of a model that cannot be served, for weights and checkpoint errors."""
    if isinstance(exc, WeightsNotFoundError):
        name = exc.model
    elif isinstance(exc, (CheckpointError, DownloadError)):
        name = request.path_params.get("name")
    else:
        return None
    settings = getattr(request.app.state, "settings", None)
    given = settings.weights.get(name) if settings is not None and name else None
    try:
        return problem_of(name, exc, given) if name else None
    except UnknownModelError:
        return None


async def bionemo_error(request: Request, exc: Exception) -> SafeJSONResponse:
    assert isinstance(exc, BionemoLiteError)
    status, code, extra = _status_and_body(exc)
    detail = str(exc)
    if status >= 500:
        # The log keeps the paths; the client gets the model, the reason and the fix.
        logger.warning("request %s: %s %s -> %d %s: %s", current_request_id(), request.method, request.url.path,
                       status, code, exc)
        problem = _model_problem(request, exc)
        if problem is not None:
            detail = problem.detail
            named = {} if "filename" in extra else {"file": problem.file}
            extra = {**extra, "model": problem.model, **named, "fix": list(problem.fix)}
        else:
            detail = redact_paths(detail)
    return error_response(status, code, detail, **extra)


def _location(loc: tuple[Any, ...]) -> str:
    # ("body", "sequences", 3) -> "sequences[3]"
    parts = [p for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


async def validation_error(request: Request, exc: Exception) -> SafeJSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Inputs are left out on purpose: they can be the whole (large) request body.
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in exc.errors()]
    detail = "; ".join(f"{_location(tuple(e['loc']))}: {e['msg']}" for e in errors) or "invalid request"
    return error_response(422, "invalid_request", detail, errors=errors)


async def http_error(request: Request, exc: Exception) -> SafeJSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    response = error_response(exc.status_code, code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


class UnhandledErrors:
    """Bugs answer a JSON 500, and the connection stays usable.

    Starlette's own last-resort handler re-raises after answering, and uvicorn
    then drops the connection, so a keep-alive client would see its *next*
    request reset. This middleware answers and stops the error here.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:  # half a response is out: nothing sensible can follow it
                raise
            logger.exception("request %s: unhandled error on %s %s", current_request_id(), scope.get("method"),
                             scope.get("path"))
            await error_response(500, "internal_error", INTERNAL_ERROR)(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; add `UnhandledErrors` (inside `RequestId`) as middleware separately."""
    app.add_exception_handler(BionemoLiteError, bionemo_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


# What the verb routes can answer besides 200, for the OpenAPI document (every body is an `ErrorBody`).
# 401/403/429 come from the API-key and rate-limit guards in front of every /v1/models route (health
# stays open), 504 from the per-request deadline; `server.openapi` adds GUARD_CODES to the GET routes.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "A request the model cannot run as asked (error bad_request)."},
    401: {"model": ErrorBody, "description": "API keys are on and the request has no known key "
                                             "(`Authorization: Bearer KEY`); the answer has WWW-Authenticate."},
    403: {"model": ErrorBody, "description": "The API key is known but not allowed (e.g. disabled)."},
    404: {"model": ErrorBody, "description": "Unknown model (with close names) or a verb the model lacks."},
    413: {"model": ErrorBody, "description": "Request body over the server's limit (setting max_body_bytes)."},
    422: {"model": ErrorBody, "description": "Invalid input, naming the record, position and reason; a body that "
                                             "breaks the schema (invalid_request, with `errors`); more records "
                                             "than the server's max_sequences; over the compute budget."},
    429: {"model": ErrorBody, "description": "Rate or concurrency limit of the API key (or client) reached; "
                                             "Retry-After says when to try again."},
    503: {"model": ErrorBody, "description": "Weights missing or unreadable, or the Triton server unreachable."},
    504: {"model": ErrorBody, "description": "Not answered within the deadline (BIONEMO_LITE_REQUEST_TIMEOUT_S)."},
}
GUARD_CODES = (401, 403, 429)
