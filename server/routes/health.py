"""Liveness and readiness probes (the paths NVIDIA NIMs use)."""

from __future__ import annotations

from fastapi import APIRouter

from bionemo_lite.errors import BackendUnavailableError

from ..deps import BackendDep
from ..responses import SafeJSONResponse
from ..schemas import Health

router = APIRouter(prefix="/v1/health", tags=["health"])


@router.get("/live", response_model=Health, response_model_exclude_none=True)
async def live() -> dict:
    """The process is up and answering."""
    return {"status": "live"}


@router.get("/ready", response_model=Health, responses={503: {"model": Health, "description": "Not ready."}})
async def ready(backend: BackendDep) -> SafeJSONResponse:
    """200 when the backend can answer requests, 503 otherwise (e.g. Triton unreachable)."""
    try:
        ok = await backend.ready()
        detail = None if ok else f"the {backend.kind} backend is not ready"
    except BackendUnavailableError as exc:
        ok, detail = False, str(exc)
    body = {"status": "ready" if ok else "not_ready", "backend": backend.kind, "detail": detail}
    return SafeJSONResponse(body, status_code=200 if ok else 503)
