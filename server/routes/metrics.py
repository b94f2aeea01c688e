"""Prometheus scrape endpoint: the app's own metrics in the text exposition format (no API key needed)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ..metrics import CONTENT_TYPE, ServiceMetrics

router = APIRouter(prefix="/v1", tags=["health"])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format."}})
async def metrics(request: Request) -> Response:
    """Request counts and latencies per route, model and status; embed batch sizes; queue depth,
    model calls in flight and model load seconds per model."""
    app_metrics: ServiceMetrics = request.app.state.metrics
    return Response(app_metrics.render(), media_type=CONTENT_TYPE)
