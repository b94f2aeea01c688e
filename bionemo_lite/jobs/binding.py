"""Matching job options to a plugin verb's keyword arguments.

Families name a few options differently (``num_samples`` / ``num_molecules``,
``msa`` / ``alignments``) and not every verb takes every option (a SMILES
scorer has no length policy). An option the verb does not take is the user's
mistake: an `InvalidInputError` naming it and the accepted ones, never a
``TypeError`` traceback.

(The HTTP service has the same rule in ``server/backends/binding.py``; both
should share one core module.)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import InvalidInputError

# Option name -> keyword names tried in order.
ALIASES: dict[str, tuple[str, ...]] = {
    "num_samples": ("num_samples", "num_molecules"),
    "msa": ("msa", "alignments", "msas"),
    "id": ("record_id", "id"),
}


def bind_options(method: Callable[..., Any], options: Mapping[str, Any], model_name: str,
                 optional: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Keyword arguments for `method` from `options` (None values left out).

    Args:
        optional: options passed only if the method takes them (e.g. a record
            id used for messages); the others must be accepted.

    Raises:
        InvalidInputError: an option the method does not accept, listing those it does.
    """
    params = inspect.signature(method).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = [n for n, p in list(params.items())[1:]
             if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        target = next((n for n in ALIASES.get(key, (key,)) if n in named), None)
        if target is None:
            if key in optional:
                continue
            if not takes_any:
                accepted = ", ".join(named) or "no options"
                raise InvalidInputError(
                    f"model {model_name!r} does not accept the option {key!r}; it accepts: {accepted}"
                )
            target = key
        kwargs[target] = value
    return kwargs
