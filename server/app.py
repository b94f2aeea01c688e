"""The FastAPI application: `create_app(settings)` and `serve(settings)`.

    uvicorn --factory bionemo_lite.server.app:create_app      # settings from BIONEMO_LITE_* variables
    bionemo-lite serve --weights esm2_t6_8M_UR50D=esm2_t6_8M_UR50D.pt

The service answers at once; models named for start-up (`server.preload`) load in
the background, and ``/v1/health/ready`` says 503 until they are loaded, naming
any that cannot be and the command that fixes it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

import bionemo_lite
from bionemo_lite.registry import get_spec

from .backends import make_provider
from .errors import UnhandledErrors, install_error_handlers
from .limits import BodySizeLimit
from .openapi import openapi_with_limits
from .preload import PreloadPlan, plan_preload
from .problems import weights_missing
from .request_id import RequestId
from .responses import SafeJSONResponse
from .routes import ROUTERS
from .settings import Settings

logger = logging.getLogger(__name__)

DESCRIPTION = """Biomolecular models behind four verbs: **embed**, **score**, **generate**, **fold**
(plus **decode** for MegaMolBART). Errors are JSON: `{"error": code, "detail": sentence, ...}`."""


def _check_names(settings: Settings) -> None:
    """Fail at start-up, not at the first request, on a misspelt model name."""
    for name in [*settings.weights, *settings.preload]:
        get_spec(name)  # UnknownModelError names close matches
    for name, path in settings.weights.items():
        if not Path(path).expanduser().exists():
            logger.warning("not ready: %s [%s does not exist]", weights_missing(get_spec(name), path).detail, path)


def _plan(settings: Settings) -> PreloadPlan:
    if settings.backend != "inprocess":  # Triton holds the weights: nothing to fetch or find here
        return PreloadPlan(tuple(settings.preload), source="preload")
    return plan_preload(settings)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service; without `settings` they are read from ``BIONEMO_LITE_*`` variables.

    Raises:
        UnknownModelError: a model named in ``weights`` or ``preload`` is not registered.
        BackendUnavailableError: the Triton backend was asked for but cannot be imported.
    """
    settings = settings if settings is not None else Settings()
    _check_names(settings)
    provider = make_provider(settings)
    plan = _plan(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await provider.start(plan.models, download=plan.download)
            loading = f"; loading {', '.join(plan.models)} ({plan.source})" if plan.models else ""
            logger.info("bionemo-lite answering (%s backend)%s", provider.kind, loading)
            yield
        finally:
            await provider.close()

    app = FastAPI(
        title="bionemo-lite",
        version=bionemo_lite.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.state.settings = settings
    app.state.provider = provider
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(UnhandledErrors)
    app.add_middleware(RequestId)  # added last = outermost: every answer, a 500 included, carries the id
    for router in ROUTERS:
        app.include_router(router)
    app.openapi = openapi_with_limits(app, settings)  # type: ignore[method-assign]  # the server's own limits
    return app


def serve(settings: Settings) -> None:
    """Run the service with uvicorn until interrupted."""
    import uvicorn

    level = logging.DEBUG if settings.log_level == "trace" else getattr(logging, settings.log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)
