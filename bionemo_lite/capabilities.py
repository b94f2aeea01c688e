"""What a model can do, read from its code before any weights are loaded.

Front doors use this to refuse an option a model has no use for (an MSA for
ESMFold, contacts from MegaMolBART) up front, instead of loading a
multi-gigabyte checkpoint and then failing every record.

    >>> cls = model_class(get_spec("esmfold_v1"))
    >>> takes_option(cls.fold, "msa")
    False
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .binding import ALIASES
from .registry import import_string
from .spec import ModelSpec


def model_class(spec: ModelSpec) -> type | None:
    """The class `spec`'s loader declares it returns (its return annotation); None if it declares none.

    Imports the plugin's code (torch, the family's modules), reads no weights.
    """
    try:
        loader = import_string(spec.loader)
        returned = loader.__annotations__.get("return")
        if isinstance(returned, str):  # `from __future__ import annotations`
            returned = eval(returned, loader.__globals__)  # noqa: S307 - the plugin's own annotation
    except Exception:  # noqa: BLE001 - an unimportable plugin fails at load time, with its own error
        return None
    return returned if isinstance(returned, type) else None


def takes_option(method: Callable[..., Any], option: str) -> bool:
    """Whether `method` names `option`, or one of its aliases (`bionemo_lite.binding.ALIASES`), as a parameter.

    A bare ``**options`` does not count: a verb that accepts anything only to
    reject it (ESMFold's ``fold`` and ``msa``) does not take the option.
    """
    params = inspect.signature(method).parameters
    keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(name in params and params[name].kind in keyword for name in ALIASES.get(option, (option,)))


def has_method(spec: ModelSpec, name: str) -> bool | None:
    """Whether `spec`'s model class has a method `name` (e.g. ``"contacts"``); None when the class is unknown."""
    cls = model_class(spec)
    return None if cls is None else callable(getattr(cls, name, None))
