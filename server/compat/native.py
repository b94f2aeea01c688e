"""The native routes' steps, for the compatibility routers: a native body in, the native answer out.

A compatibility route translates its wire format into the native request body
(`server.schemas`), runs it here exactly as ``/v1/models/{name}/<verb>`` does
(the same checks, budget and provider call, so the numbers are the native
API's), and translates the answer back. Nothing here knows a family.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from bionemo_lite.registry import get_spec, require_verb
from bionemo_lite.spec import ModelSpec

from ..backends.base import ModelProvider
from ..budget import check_budget, embed_cost, fold_cost, generate_cost
from ..ratelimit import CLIENT_STATE
from ..schemas import DecodeRequest, EmbedRequest, FoldRequest, GenerateRequest
from ..settings import Settings
from ..validation import check_count, check_fold_sequence, check_proteins, check_smiles

Body = TypeVar("Body", bound=BaseModel)
ANONYMOUS = "anonymous"


def parse(model: type[Body], data: dict[str, Any]) -> Body:
    """`data` as the native body `model`; a schema error is the app's ``invalid_request`` answer."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


def spec_with(name: str, verb: str) -> ModelSpec:
    spec = get_spec(name)
    require_verb(spec, verb)
    return spec


def provider_of(request: Request) -> ModelProvider:
    return request.app.state.provider


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def owner_of(request: Request) -> str:
    """The API key's name (the owner of tasks and jobs), or ``"anonymous"`` without keys."""
    client = request.scope.get("state", {}).get(CLIENT_STATE)
    if client is None or not client.id.startswith("key:"):
        return ANONYMOUS
    return client.id.removeprefix("key:")


async def embed(request: Request, name: str, body: EmbedRequest) -> dict[str, Any]:
    """``POST /v1/models/{name}/embed``'s JSON answer (before its file encoding)."""
    spec = spec_with(name, "embed")
    settings = settings_of(request)
    check_count(len(body.sequences), settings.max_sequences)
    check_proteins(spec, body.records(), on_too_long=body.on_too_long)
    check_budget(embed_cost(spec, body), settings)
    return await provider_of(request).embed(spec.name, body.verb_options(), body.records())


def generate(request: Request, name: str, body: GenerateRequest) -> Callable[[], Awaitable[dict[str, Any]]]:
    """``POST /v1/models/{name}/generate``: its checks now (they raise), its model call when awaited."""
    spec = spec_with(name, "generate")
    settings = settings_of(request)
    check_count(len(body.sequences), settings.max_sequences)
    records = body.records()
    check_smiles(spec, records)
    check_budget(generate_cost(spec, body), settings)
    options, provider = body.verb_options(), provider_of(request)
    return lambda: provider.run(spec.name, "generate", lambda model: options.run(model, records).to_dict())


def fold(request: Request, name: str, body: FoldRequest) -> Callable[[], Awaitable[dict[str, Any]]]:
    """``POST /v1/models/{name}/fold``: its checks now, the model call (both structure texts, the
    relaxed one with ``relax``) when awaited."""
    spec = spec_with(name, "fold")
    check_fold_sequence(spec, body.sequence, body.id or "sequence")
    check_budget(fold_cost(spec, body), settings_of(request))
    options, provider = body.verb_options(), provider_of(request)
    return lambda: provider.run(spec.name, "fold", lambda model: options.run(model, body.sequence).to_dict())


async def decode(request: Request, name: str, body: DecodeRequest) -> list[Any]:
    """``POST /v1/models/{name}/decode``'s ``generated``."""
    spec = spec_with(name, "decode")
    check_count(len(body.hiddens), settings_of(request).max_sequences)
    hiddens, mask = np.asarray(body.hiddens, dtype=np.float32), np.asarray(body.mask, dtype=bool)
    options = body.verb_options()
    return await provider_of(request).run(spec.name, "decode", lambda model: list(options.run(model, hiddens, mask)))


def structure_text(result: dict[str, Any], fmt: str = "pdb") -> str:
    """The structure of a fold answer in `fmt` (``pdb`` / ``mmcif``), the relaxed one when relaxed,
    the other format when the model could not write this one."""
    source = result["relaxed"] if result.get("relaxed") else result
    other = "mmcif" if fmt == "pdb" else "pdb"
    return source.get(fmt) or source.get(other) or ""
