"""Error answers as the BioNeMo client's `ResponseHandler` reads them.

The client maps 400 to `IncorrectParamsError`, 401/403 to `AuthorizationError`,
404 to `RequestIDNotFoundError` (it names the last path segment as the request
id), 429 to `TooManyRequestsError`; other 4xx are a bare `ClientSideError`. So
under ``/bionemo/v1`` the native 422s (bad input, over budget, a broken body)
are answered 400 with the same JSON body, and a model this server does not host
is a 400 naming what it does host.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response

from bionemo_lite.errors import BionemoLiteError

from ...errors import bionemo_error, error_response, validation_error
from .catalog import NOT_HOSTED, hosted_names

CLIENT_BAD_PARAMS = 400


class BioNeMoRoute(APIRoute):
    """A route whose 422 answers go out as 400, the code the BioNeMo client reads as bad parameters."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except RequestValidationError as exc:
                response = await validation_error(request, exc)
            except BionemoLiteError as exc:
                response = await bionemo_error(request, exc)
            if response.status_code == 422:
                response.status_code = CLIENT_BAD_PARAMS
            return response

        return route


def not_hosted(model: str) -> Response:
    """400 ``model_not_hosted``: `model` is a BioNeMo service model this server does not serve."""
    hosted = hosted_names()
    reason = NOT_HOSTED.get(model, f"{model!r} is not a model of this server")
    return error_response(CLIENT_BAD_PARAMS, "model_not_hosted",
                          f"{reason}. This server (bionemo-lite) hosts: {', '.join(hosted)} "
                          "(GET /bionemo/v1/models lists them with the client methods that reach them)",
                          model=model, hosted=hosted)


def task_not_found(task_id: str) -> Response:
    return error_response(404, "task_not_found", f"no task {task_id!r} of this API key (deleted, or never made)",
                          correlation_id=task_id)
