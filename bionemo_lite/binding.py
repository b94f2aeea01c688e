"""Matching user options to a plugin verb's keyword arguments.

Families name a few options differently (``num_samples`` / ``num_molecules``,
``alignments`` / ``msa``) and not every verb takes every option (a SMILES
scorer has no length policy). An option the verb does not take is the user's
mistake: an `InvalidInputError` naming it and the accepted ones (HTTP 422, a
clean CLI error), never a ``TypeError`` traceback. Shared by the HTTP service
and the batch jobs so both front doors accept the same options.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from .errors import InvalidInputError, UnsupportedVerbError

_MSA = ("msa", "alignments", "msas")
# Option name -> keyword names tried in order.
ALIASES: dict[str, tuple[str, ...]] = {
    "num_samples": ("num_samples", "num_molecules"),
    "msa": _MSA,
    "alignments": _MSA,
    "id": ("record_id", "id"),
}


def verb_method(model: Any, verb: str) -> Callable[..., Any]:
    """The bound method for `verb`, refusing verbs the model does not declare."""
    method = getattr(model, verb, None)
    if verb not in model.verbs or not callable(method):
        raise UnsupportedVerbError(model.name, verb, model.verbs)
    return method


def bind_options(
    method: Callable[..., Any],
    options: Mapping[str, Any],
    model_name: str,
    positional: int = 1,
    optional: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Keyword arguments for `method` from `options` (None values left out).

    Args:
        positional: how many leading parameters the caller fills itself (the inputs).
        optional: options passed only if the method takes them (e.g. a record
            id used for messages); the others must be accepted.

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
