"""Request dependencies: the settings, the model provider, and the model a route acts on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path, Request

from bionemo_lite.registry import get_spec, require_verb
from bionemo_lite.spec import ModelSpec

from .backends.base import ModelProvider
from .settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_provider(request: Request) -> ModelProvider:
    return request.app.state.provider


SettingsDep = Annotated[Settings, Depends(get_settings)]
ProviderDep = Annotated[ModelProvider, Depends(get_provider)]
ModelName = Annotated[str, Path(description="Registered model name, e.g. esm2_t6_8M_UR50D (see GET /v1/models).")]


def model_with(verb: str) -> Callable[[str], Awaitable[ModelSpec]]:
    """A dependency resolving the path's ``{name}`` to a spec that has `verb`.

    Dependencies run before the body is validated, so an unknown model is a 404
    even when the body is wrong too.
    """

    async def dependency(name: ModelName) -> ModelSpec:
        spec = get_spec(name)
        require_verb(spec, verb)
        return spec

    return dependency
