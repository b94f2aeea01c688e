"""The OpenAPI document with the running server's own limits written into it.

FastAPI derives the document from the pydantic bodies (`server.schemas`), which
are fixed at import. Some constraints belong to the running server instead, and
are added here when the document is first asked for, so that clients and
schema-driven fuzzers see what the server enforces:

* ``maxItems`` of the counted list of each body (``sequences``, ``hiddens``):
  the ``max_sequences`` setting (`server.validation.check_count`);
* the ``{name}`` of each verb route: an enum of the registered models with
  that verb (any other name is a 404);
* the score ``method``: an enum of the methods the registered families declare;
* on every ``/v1/models`` route, the answers of the guards in front of all of
  them (API keys 401/403, rate limits 429); the health probes stay open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from bionemo_lite.registry import list_models
from bionemo_lite.verbs import VERB_PROTOCOLS

from .errors import ERROR_RESPONSES, GUARD_CODES
from .schemas import COUNTED_FIELDS, ErrorBody
from .settings import Settings

OpenAPI = dict[str, Any]


def openapi_with_limits(app: FastAPI, settings: Settings) -> Callable[[], OpenAPI]:
    """A replacement for ``app.openapi``: FastAPI's document plus `settings`' limits (built once)."""
    build = app.openapi

    def openapi() -> OpenAPI:
        if app.openapi_schema is None:  # FastAPI builds the document once and keeps it there
            add_limits(build(), settings)
        return build()

    return openapi


def add_limits(document: OpenAPI, settings: Settings) -> None:
    """Write `settings`' limits, the served verbs' model names and the guards' answers into `document`."""
    components = document.get("components", {}).get("schemas", {})
    for model, field in COUNTED_FIELDS.items():
        prop = components.get(model.__name__, {}).get("properties", {}).get(field)
        if prop is not None:
            prop["maxItems"] = settings.max_sequences
    methods = sorted({m for spec in list_models("score") for m in spec.score_methods})
    method = components.get("ScoreRequest", {}).get("properties", {}).get("method")
    if method is not None and methods:
        for choice in method.get("anyOf", [method]):
            if choice.get("type") == "string":
                choice["enum"] = methods
    for path, operations in document.get("paths", {}).items():
        if not path.startswith("/v1/models"):
            continue
        verb = path.rsplit("/", 1)[-1]
        for operation in operations.values():
            _guard_answers(operation)
            if path.endswith("/{name}/" + verb) and verb in VERB_PROTOCOLS:
                names = [spec.name for spec in list_models(verb)]
                for parameter in operation.get("parameters", []):
                    if parameter.get("in") == "path" and parameter.get("name") == "name" and names:
                        parameter["schema"]["enum"] = names


def _guard_answers(operation: OpenAPI) -> None:
    """The 401/403/429 answers on an operation that does not list them yet (the verb routes'
    `ERROR_RESPONSES` have them, and with them the `ErrorBody` component this refers to)."""
    responses = operation.setdefault("responses", {})
    for code in GUARD_CODES:
        responses.setdefault(str(code), {
            "description": ERROR_RESPONSES[code]["description"],
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}}},
        })
