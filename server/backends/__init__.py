"""Backends answer the routes: in this process (default) or through a Triton server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bionemo_lite.errors import BackendUnavailableError

from .base import Backend, BackendBase, describe_model

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["Backend", "BackendBase", "describe_model", "make_backend"]


def make_backend(settings: Settings) -> Backend:
    """The backend named by ``settings.backend`` (Triton's client is imported only when chosen)."""
    if settings.backend == "inprocess":
        from .inprocess import InProcessBackend

        return InProcessBackend(settings)
    if settings.backend == "triton":
        try:
            from .triton import TritonBackend
        except ImportError as exc:
            raise BackendUnavailableError(f"the Triton backend cannot be imported: {exc}") from exc
        return TritonBackend(settings)
    raise ValueError(f"unknown backend {settings.backend!r}; use 'inprocess' or 'triton'")
