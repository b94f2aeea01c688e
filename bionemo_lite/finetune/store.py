"""Fine-tunes registered by name: a copy of the fine-tune's folder in the weight cache.

``register_finetune(folder, "my_solubility")`` copies the folder to
``$BIONEMO_LITE_HOME/my_solubility/`` (where every model's weights are looked up by
name) and registers its spec, so ``load("my_solubility")``, ``bionemo-lite models`` and
the HTTP service find it; the ``finetuned`` plugin lists those folders in later runs.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from ..errors import InvalidInputError
from ..spec import ModelSpec
from .card import FAMILY, FinetuneCard, is_finetune_folder

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")


def check_name(name: str) -> str:
    """A fine-tune's name: a letter, then letters, digits, ``_ . -`` (it is a folder and a URL segment)."""
    if not NAME.match(name):
        raise InvalidInputError(f"fine-tune name {name!r} must start with a letter and hold only letters, digits, "
                                "'_', '.' or '-' (at most 128)")
    return name


def check_free_name(name: str) -> str:
    """`name` is a valid fine-tune name that no other model (nor another model's weight folder) has.

    Raises:
        InvalidInputError: a bad name, or another model's.
    """
    from ..errors import UnknownModelError
    from ..registry import get_spec
    from ..weights import cache_home

    check_name(name)
    try:
        existing = get_spec(name)
    except UnknownModelError:
        existing = None
    dest = cache_home() / name
    if (existing is not None and existing.family != FAMILY) or (dest.exists() and not is_finetune_folder(dest)):
        raise InvalidInputError(f"{name!r} is the name of another model (or its weight folder); choose another name")
    return name


def registered_specs() -> list[ModelSpec]:
    """The specs of the fine-tunes in the weight cache (folders holding a fine-tune card)."""
    from ..weights import cache_home

    home = cache_home()
    specs = []
    for folder in sorted(home.iterdir()) if home.is_dir() else []:
        if folder.is_dir() and is_finetune_folder(folder):
            try:
                specs.append(FinetuneCard.read(folder).spec(folder.name))
            except Exception:  # a damaged card hides one fine-tune, not the others
                continue
    return specs


def register_finetune(folder: str | Path, name: str) -> ModelSpec:
    """Copy the fine-tune in `folder` into the weight cache as `name` and register it.

    A fine-tune already registered under `name` is replaced; another model's name is refused.

    Raises:
        InvalidInputError: a bad name, or a name another (not fine-tuned) model has.
        CheckpointError: `folder` holds no fine-tune card.
    """
    from ..registry import register, unregister
    from ..weights import cache_home

    check_free_name(name)
    card = FinetuneCard.read(folder)
    dest = cache_home() / name
    if Path(folder).resolve() != dest.resolve():
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=dest.parent))
        for file in card.files():
            shutil.copy2(Path(folder) / file, staging / file)
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)  # the new folder appears whole
    spec = FinetuneCard.read(dest).spec(name)
    unregister(name)
    register(spec)
    return spec
