"""The FastAPI application: `create_app(settings)` and `serve(settings)`.

    uvicorn --factory bionemo_lite.server.app:create_app      # settings from BIONEMO_LITE_* variables
    bionemo-lite serve --weights esm2_t6_8M_UR50D=esm2_t6_8M_UR50D.pt

The service answers at once; models named for start-up (`server.preload`) load in
the background, and ``/v1/health/ready`` says 503 until they are loaded, naming
any that cannot be and the command that fixes it.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

import bionemo_lite
from bionemo_lite.registry import get_spec

from .auth import check_exposure, install_access_control
from .backends import make_provider
from .errors import UnhandledErrors, install_error_handlers
from .lifetime import RequestLifetime
from .limits import BodySizeLimit
from .logs import configure_logging, logging_config
from .metrics import HttpMetrics, ServiceMetrics
from .openapi import openapi_with_limits
from .preload import PreloadPlan, plan_preload
from .problems import weights_missing
from .request_id import RequestId
from .jobs.pool import WorkerPool
from .jobs.service import JobService
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
    if settings.log_format == "json":  # `uvicorn --factory` has set up text logging before calling us
        configure_logging(settings.log_format, settings.log_level)
    _check_names(settings)
    metrics = ServiceMetrics()
    provider = make_provider(settings, metrics)
    plan = _plan(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await provider.start(plan.models, download=plan.download)
            # jobs over HTTP: worker processes of their own (server/jobs/pool.py), now if jobs wait
            app.state.job_workers.start_if_work()
            loading = f"; loading {', '.join(plan.models)} ({plan.source})" if plan.models else ""
            logger.info("bionemo-lite answering (%s backend)%s", provider.kind, loading)
            yield
        finally:
            await app.state.job_workers.stop()
            await provider.close()
            app.state.jobs.close()

    app = FastAPI(
        title="bionemo-lite",
        version=bionemo_lite.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.state.settings = settings
    app.state.provider = provider
    app.state.metrics = metrics
    app.state.jobs = JobService.from_settings(settings)  # POST /v1/jobs (server/jobs/service.py)
    app.state.job_workers = WorkerPool(settings, app.state.jobs.store, app.state.jobs.root,
                                       settings.job_workers)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes,
                       paths={"/v1/jobs": settings.max_upload_bytes})  # job uploads have their own limit
    app.add_middleware(RequestLifetime, timeout_s=settings.request_timeout_s)  # disconnect / deadline cancel
    install_access_control(app, settings)  # API keys and per-client limits, outside the body limit
    app.add_middleware(UnhandledErrors)
    app.add_middleware(HttpMetrics, metrics=metrics)  # outside UnhandledErrors: a bug's 500 is counted
    app.add_middleware(RequestId)  # added last = outermost: every answer, a 500 included, carries the id
    for router in ROUTERS:
        app.include_router(router)
    app.openapi = openapi_with_limits(app, settings)  # type: ignore[method-assign]  # the server's own limits
    return app


# Idle keep-alive connections are kept this long: the BioNeMo client polls a task every 5 s on one
# connection, and uvicorn's own 5 s closed it just as the next poll was sent (a reset, no retry on http).
KEEP_ALIVE_S = 30


def _exit_zero(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(settings: Settings) -> None:
    """Run the service with uvicorn until interrupted.

    SIGTERM stops accepting, lets in-flight requests finish for up to ``shutdown_timeout_s``,
    cancels the rest (their model calls stop at the next batch boundary) and exits 0.
    """
    import uvicorn

    check_exposure(settings)  # no keys beyond loopback unless --insecure
    configure_logging(settings.log_format, settings.log_level)  # before the app is built: its warnings too
    log_config = logging_config(settings.log_format, settings.log_level)
    # uvicorn re-raises the signal once it has shut down; this handler turns that into exit status 0.
    signal.signal(signal.SIGTERM, _exit_zero)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                log_config=log_config, timeout_graceful_shutdown=settings.shutdown_timeout_s,
                timeout_keep_alive=KEEP_ALIVE_S)
