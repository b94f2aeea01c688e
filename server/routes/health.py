"""Liveness and readiness probes (the paths NVIDIA NIMs use), and what is running."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter

import bionemo_lite
from bionemo_lite.errors import BackendUnavailableError

from ..backends.base import Readiness
from ..deps import ProviderDep
from ..responses import SafeJSONResponse
from ..schemas import Health, VersionInfo

router = APIRouter(prefix="/v1", tags=["health"])


def _distribution_version(name: str) -> str | None:
    try:
        return version(name)  # from the installed metadata: no need to import torch for its version
    except PackageNotFoundError:
        return None


@router.get("/health/live", response_model=Health, response_model_exclude_none=True)
async def live() -> dict:
    """The process is up and answering (with the package version)."""
    return {"status": "live", "version": bionemo_lite.__version__}


@router.get("/health/ready", response_model=Health, responses={503: {"model": Health, "description": "Not ready."}})
async def ready(provider: ProviderDep) -> SafeJSONResponse:
    """200 when every model loaded at start-up is loaded and the backend answers; 503 otherwise:
    ``"loading"`` while models download or load, ``"not_ready"`` naming each missing model,
    its file and the command that fixes it (or e.g. Triton unreachable)."""
    try:
        readiness = await provider.readiness()
    except BackendUnavailableError as exc:
        readiness = Readiness("not_ready", str(exc))
    return SafeJSONResponse(readiness.to_dict(provider.kind), status_code=200 if readiness.ready else 503)


@router.get("/version", response_model=VersionInfo)
async def version_info(provider: ProviderDep) -> dict:
    """The bionemo-lite, Python and torch versions, and the backend serving the models."""
    return {"version": bionemo_lite.__version__, "python": platform.python_version(),
            "torch": _distribution_version("torch"), "backend": provider.kind}
