"""Liveness and readiness probes (the paths NVIDIA NIMs use)."""

from __future__ import annotations

from fastapi import APIRouter

from bionemo_lite.errors import BackendUnavailableError

from ..backends.base import Readiness
from ..deps import ProviderDep
from ..responses import SafeJSONResponse
from ..schemas import Health

router = APIRouter(prefix="/v1/health", tags=["health"])


@router.get("/live", response_model=Health, response_model_exclude_none=True)
async def live() -> dict:
    """The process is up and answering."""
    return {"status": "live"}


@router.get("/ready", response_model=Health, responses={503: {"model": Health, "description": "Not ready."}})
async def ready(provider: ProviderDep) -> SafeJSONResponse:
    """200 when every model loaded at start-up is loaded and the backend answers; 503 otherwise:
    ``"loading"`` while models download or load, ``"not_ready"`` naming each missing model,
    its file and the command that fixes it (or e.g. Triton unreachable)."""
    try:
        readiness = await provider.readiness()
    except BackendUnavailableError as exc:
        readiness = Readiness("not_ready", str(exc))
    return SafeJSONResponse(readiness.to_dict(provider.kind), status_code=200 if readiness.ready else 503)
