"""The model catalogue: what is registered, whether its weights are found, whether it is loaded and ready."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from bionemo_lite.registry import get_spec

from ..backends.base import describe_model
from ..deps import ModelName, ProviderDep, SettingsDep
from ..errors import ERROR_RESPONSES
from ..schemas import ModelInfo, ModelList

router = APIRouter(prefix="/v1/models", tags=["models"])


def with_readiness(entry: dict[str, Any]) -> dict[str, Any]:
    """`entry` with ``ready`` (it answers now, no load first) and a ``state`` for every provider
    (a Triton model is ``loaded`` when Triton serves it, else ``not_loaded``)."""
    state = entry.get("state") or ("loaded" if entry.get("loaded") else "not_loaded")
    return {**entry, "state": state, "ready": state == "loaded"}


@router.get("", response_model=ModelList)
async def list_models(provider: ProviderDep) -> dict[str, Any]:
    """Every registered model with its verbs, weight availability, load state and readiness."""
    return {"models": [with_readiness(entry) for entry in await provider.models()]}


@router.get("/{name}", response_model=ModelInfo, responses={404: ERROR_RESPONSES[404]})
async def model_info(name: ModelName, provider: ProviderDep, settings: SettingsDep) -> dict[str, Any]:
    """One model's card, its architecture config included."""
    spec = get_spec(name)  # unknown -> 404 with close names
    listed = (m for m in await provider.models() if m["name"] == spec.name)
    entry = next(listed, None) or describe_model(spec, settings, loaded=False)
    return {**with_readiness(entry), "config": dict(spec.config)}
