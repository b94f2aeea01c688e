"""Matching user options to a plugin verb's keyword arguments.

Families name a few options differently (``num_samples`` / ``num_molecules``,
``alignments`` / ``msa``) and not every verb takes every option (a SMILES
scorer has no length policy). An option the verb does not take is the user's
mistake: an `InvalidInputError` naming it and the accepted ones (HTTP 422, a
clean CLI error), never a ``TypeError`` traceback. So is a value of the wrong
type: values are checked against the verb's type annotations, strictly (a
boolean is not an integer, ``"3"`` is not a number, numbers are finite), so a
bad value never reaches the model as a 500. Ranges only the family knows
(e.g. how small a temperature its logits survive) are the model's to check.
Shared by the HTTP service and the batch jobs so both front doors accept the
same options.
"""

from __future__ import annotations

import functools
import inspect
import typing
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
_SHOWN_VALUE = 80  # characters of a bad value quoted in the message


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
    """Keyword arguments for `method` from `options` (None values left out), each value checked
    against the method's annotation of it.

    Args:
        positional: how many leading parameters the caller fills itself (the inputs).
        optional: options passed only if the method takes them (e.g. a record
            id used for messages); the others must be accepted.

    Raises:
        InvalidInputError: options the method does not accept (all of them named,
            with the ones it accepts), two options for the same parameter, or a
            value of the wrong type (naming the option and the type).
    """
    params = inspect.signature(method).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = [
        n for n, p in list(params.items())[positional:]
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    targets: dict[str, str] = {}  # parameter -> the option that sets it
    unknown: list[str] = []
    for key, value in options.items():
        if value is None:  # the caller's "not set": the method's default applies
            continue
        target = next((n for n in ALIASES.get(key, (key,)) if n in named), None)
        if target is None:
            if key in optional:
                continue
            if not takes_any:
                unknown.append(key)
                continue
            target = key
        if target in targets:
            raise InvalidInputError(
                f"options {targets[target]!r} and {key!r} both set {target!r} of model {model_name!r}; give one"
            )
        targets[target] = key
    if unknown:
        accepted = ", ".join(named) or "no options"
        listed = ", ".join(repr(k) for k in unknown)
        noun = "option" if len(unknown) == 1 else "options"
        raise InvalidInputError(f"model {model_name!r} does not accept the {noun} {listed}; it accepts: {accepted}")
    kwargs: dict[str, Any] = {}
    for target, key in targets.items():
        if target in params:  # not a **kwargs catch-all
            check_option_value(method, target, key, options[key])
        kwargs[target] = options[key]
    return kwargs


def check_option_value(method: Callable[..., Any], parameter: str, option: str, value: Any) -> None:
    """Raise `InvalidInputError` naming `option` unless `value` fits the annotation of `parameter`.

    Parameters without an annotation, annotated ``Any``, or with annotations
    that cannot be resolved take any value.
    """
    func = getattr(method, "__func__", method)
    checker = _checker(func, parameter)
    if checker is None:
        return
    from pydantic import ValidationError

    try:
        checker.validate_python(value)
    except ValidationError as exc:
        why = exc.errors()[0].get("msg", "invalid value")
        shown = repr(value)
        if len(shown) > _SHOWN_VALUE:
            shown = shown[: _SHOWN_VALUE - 3] + "..."
        expected = inspect.signature(func).parameters[parameter].annotation
        if not isinstance(expected, str):
            expected = getattr(expected, "__name__", str(expected))
        why = why[:1].lower() + why[1:]
        raise InvalidInputError(f"option {option!r}: {why}, got {shown} (expected {expected})") from None


@functools.lru_cache(maxsize=512)
def _checker(func: Callable[..., Any], parameter: str) -> Any:
    """A strict pydantic `TypeAdapter` for one parameter's annotation, or None to accept anything."""
    try:
        hint = typing.get_type_hints(func, include_extras=True).get(parameter)  # Annotated constraints too
    except Exception:  # annotations naming what the module does not import at run time
        return None
    if hint is None or hint is Any:
        return None
    from pydantic import ConfigDict, TypeAdapter

    config = ConfigDict(strict=True, allow_inf_nan=False, arbitrary_types_allowed=True)
    try:
        return TypeAdapter(hint, config=config)
    except Exception:  # a type pydantic cannot check: the model validates it itself
        return None
