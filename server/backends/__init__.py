"""Model providers answer the routes: in this process (default) or through Triton servers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bionemo_lite.errors import BackendUnavailableError

from .base import ModelProvider, ProviderBase, describe_model

if TYPE_CHECKING:
    from ..metrics import ServiceMetrics
    from ..settings import Settings

__all__ = ["ModelProvider", "ProviderBase", "describe_model", "make_provider"]


def make_provider(settings: Settings, metrics: ServiceMetrics | None = None) -> ModelProvider:
    """The provider named by ``settings.backend`` (Triton's client is imported only when chosen);
    the in-process one reports batches, queues and loads to `metrics`."""
    if settings.backend == "inprocess":
        from .inprocess import InProcessProvider

        return InProcessProvider(settings, metrics)
    if settings.backend == "triton":
        try:
            from .triton import TritonProvider
        except ImportError as exc:
            raise BackendUnavailableError(f"the Triton backend cannot be imported: {exc}") from exc
        return TritonProvider(settings)
    raise ValueError(f"unknown backend {settings.backend!r}; use 'inprocess' or 'triton'")
