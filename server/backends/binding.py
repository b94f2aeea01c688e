"""Matching request options to a plugin method's keyword arguments.

Families name a few options differently (``num_samples`` / ``num_molecules``,
``alignments`` / ``msa``); an option the method does not take is the user's
mistake and becomes a 422 naming it, never a ``TypeError`` 500.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from bionemo_lite.errors import InvalidInputError, UnsupportedVerbError

# Request field -> keyword names tried in order.
ALIASES: dict[str, tuple[str, ...]] = {
    "num_samples": ("num_samples", "num_molecules"),
    "alignments": ("alignments", "msa", "msas"),
    "id": ("record_id", "id"),
}


def verb_method(model: Any, verb: str) -> Callable[..., Any]:
    """The bound method for `verb`, refusing verbs the model does not declare."""
    method = getattr(model, verb, None)
    if verb not in model.verbs or not callable(method):
        raise UnsupportedVerbError(model.name, verb, model.verbs)
    return method


def bind_options(
    method: Callable[..., Any], options: Mapping[str, Any], model_name: str, positional: int = 1
) -> dict[str, Any]:
    """Keyword arguments for `method` from `options` (None values left out).

    Args:
        positional: how many leading parameters the caller fills itself (the inputs).

    Raises:
        InvalidInputError: an option the method does not accept, listing the ones it does.
    """
    params = inspect.signature(method).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = [
        n for n, p in list(params.items())[positional:]
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        target = next((n for n in ALIASES.get(key, (key,)) if n in named), None)
        if target is None:
            if not takes_any:
                accepted = ", ".join(named) or "no options"
                raise InvalidInputError(
                    f"model {model_name!r} does not accept the option {key!r}; it accepts: {accepted}"
                )
            target = key
        kwargs[target] = value
    return kwargs
