"""The model registry: plugins register `ModelSpec`s, users list and load them.

Plugins are found through the entry-point group ``bionemo_lite.models``; each
entry point names a callable returning an iterable of `ModelSpec` (or the
iterable itself). A plugin that fails to import is logged and skipped, so one
broken family never hides the others. Set ``BIONEMO_LITE_NO_PLUGINS=1`` to
switch autoloading off (tests and embedders then call `register` themselves).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import logging
import os
import threading
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidInputError, UnknownModelError, UnsupportedVerbError
from .spec import ModelSpec

if TYPE_CHECKING:
    from .model import BioModel

ENTRY_POINT_GROUP = "bionemo_lite.models"
logger = logging.getLogger(__name__)

_specs: dict[str, ModelSpec] = {}
_lock = threading.RLock()
_plugins_loaded = False
plugin_errors: dict[str, str] = {}
"""Entry points that failed to load, by name, with the error (for diagnostics)."""


def register(spec: ModelSpec) -> ModelSpec:
    """Add a variant to the registry.

    Registering the very same spec twice is a no-op (plugins may be loaded
    more than once); a different spec under a taken name is refused.
    """
    with _lock:
        existing = _specs.get(spec.name)
        if existing is not None and existing != spec:
            raise ValueError(
                f"model name {spec.name!r} is already registered by family {existing.family!r}"
            )
        _specs[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a variant (for tests and for plugins that replace themselves)."""
    with _lock:
        _specs.pop(name, None)


def load_plugins(force: bool = False) -> None:
    """Discover and register every installed plugin (once, unless `force`)."""
    global _plugins_loaded
    with _lock:
        if _plugins_loaded and not force:
            return
        _plugins_loaded = True
        if os.environ.get("BIONEMO_LITE_NO_PLUGINS", "") not in ("", "0"):
            return
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                provided = ep.load()
                specs = provided() if callable(provided) else provided
                for spec in specs:
                    register(spec)
            except Exception as exc:  # one broken plugin must not hide the others
                plugin_errors[ep.name] = f"{type(exc).__name__}: {exc}"
                logger.warning("model plugin %r failed to load and was skipped: %s", ep.name, exc)


def list_models(verb: str | None = None, pattern: str | None = None) -> list[ModelSpec]:
    """Registered variants, sorted by family then name.

    Args:
        verb: keep only models that have this verb (``"embed"``, ``"fold"``...).
        pattern: shell-style filter on the name, e.g. ``"esm2_*"``.
    """
    load_plugins()
    with _lock:
        specs = list(_specs.values())
    if verb is not None:
        specs = [s for s in specs if verb in s.verbs]
    if pattern is not None:
        specs = [s for s in specs if fnmatch.fnmatch(s.name, pattern)]
    return sorted(specs, key=lambda s: (s.family, s.params or 0, s.name))


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered variant; `UnknownModelError` lists close names."""
    load_plugins()
    with _lock:
        spec = _specs.get(name)
        names = list(_specs)
    if spec is None:
        raise UnknownModelError(name, difflib.get_close_matches(name, names, n=3, cutoff=0.5))
    return spec


def import_string(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def load(
    name: str,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    numerics: str | None = None,
    **options: Any,
) -> BioModel:
    """Load a model by its registered name.

    Args:
        name: variant name, e.g. ``"esm2_t6_8M_UR50D"``, or the folder of a fine-tune
            (`bionemo_lite.finetune`).
        weights: a checkpoint file or directory; None looks in the cache
            (``$BIONEMO_LITE_HOME``, default ``~/.cache/bionemo-lite``).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``; None picks the
            family's default for the device.
        numerics: ``"fast"`` (fused kernels, the default) or ``"reference"``
            (the reference implementation's exact arithmetic) for families that
            offer a choice (``spec.numerics``); other families ignore it. None
            reads ``$BIONEMO_LITE_NUMERICS``, then the family's default.
        **options: family-specific loading options.

    Raises:
        UnknownModelError: no such variant.
        WeightsNotFoundError: nothing at `weights` and nothing cached.
        DeviceUnavailableError: the device does not exist on this machine.
        CheckpointError: the file is not a checkpoint this family can read.
        InvalidInputError: `numerics` is not a mode the family offers.

    Returns:
        The model, with ``weights_path`` (the checkpoint it read) and ``numerics`` set.
    """
    from .devices import check_device
    from .weights import resolve_weights

    # A fine-tune's folder (bionemo_lite.finetune) loads by its path, as well as by its registered name.
    from .finetune.card import is_finetune_folder

    if is_finetune_folder(name):
        from .finetune.model import load_path

        check_device(device)
        return load_path(name, device=device, dtype=dtype, **options)

    spec = get_spec(name)
    check_device(device)
    path = resolve_weights(spec, weights)
    numerics = resolve_numerics(spec, numerics)
    if numerics is not None:
        options["numerics"] = numerics
    loader = import_string(spec.loader)
    model = loader(spec, Path(path), device=device, dtype=dtype, **options)
    model.weights_path = Path(path)  # what was resolved, so no door resolves it again
    model.numerics = numerics
    return model


NUMERICS_ENV = "BIONEMO_LITE_NUMERICS"


def resolve_numerics(spec: ModelSpec, numerics: str | None = None) -> str | None:
    """The numerics mode `spec`'s loader gets: the argument, else ``$BIONEMO_LITE_NUMERICS``, else its first mode.

    None for families without a choice. An unknown mode is an `InvalidInputError`
    for families that offer a choice (a mode set for the whole server through the
    variable may not concern every family, so it is only checked where it applies).
    """
    if not spec.numerics:
        return None
    chosen = numerics if numerics is not None else (os.environ.get(NUMERICS_ENV) or None)
    if chosen is None:
        return spec.numerics[0]
    if chosen not in spec.numerics:
        raise InvalidInputError(f"numerics must be one of {', '.join(spec.numerics)} for {spec.name}, got {chosen!r}")
    return chosen


def require_verb(spec: ModelSpec, verb: str) -> None:
    if verb not in spec.verbs:
        raise UnsupportedVerbError(spec.name, verb, spec.verbs)


def register_all(specs: Iterable[ModelSpec]) -> None:
    for spec in specs:
        register(spec)
