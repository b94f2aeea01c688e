"""Which models the service loads at start-up (and so waits for before it says it is ready).

1. the ``preload`` setting, when given;
2. else, when no ``weights`` are given either, every registered model in the weight cache;
3. else, when the cache is empty too, ``default_model``, downloaded into the cache first.

With ``weights`` but no ``preload``, models load on their first request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bionemo_lite.errors import UnknownModelError
from bionemo_lite.registry import get_spec
from bionemo_lite.weights import list_cached

from .settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreloadPlan:
    """Models to load at start-up, in order, and which of them to download when they are not cached.

    Attributes:
        source: why these models: ``"preload"``, ``"weights"`` (none: they load on first use),
            ``"cache"``, ``"default_model"`` or ``"none"`` (nothing configured, nothing cached).
    """

    models: tuple[str, ...] = ()
    download: tuple[str, ...] = ()
    source: str = "none"


def is_registered(name: str) -> bool:
    try:
        get_spec(name)
        return True
    except UnknownModelError:
        return False


def plan_preload(settings: Settings) -> PreloadPlan:
    """What to load at start-up for the in-process backend (see the module docstring)."""
    if settings.preload:
        return PreloadPlan(tuple(dict.fromkeys(settings.preload)), source="preload")
    if settings.weights:
        return PreloadPlan(source="weights")
    cached = list(list_cached())
    served = tuple(name for name in cached if is_registered(name))
    for name in sorted(set(cached) - set(served)):
        logger.info("the weight cache has a folder %r, which is no registered model; not served", name)
    if served:
        return PreloadPlan(served, source="cache")
    default = settings.default_model
    if default is not None and is_registered(default):
        return PreloadPlan((default,), download=(default,), source="default_model")
    if default is not None:
        logger.warning("default_model %r is no registered model; nothing is downloaded", default)
    return PreloadPlan()
