"""Molecular properties to optimise, by name: QED, penalised logP, and any scorer registered here.

Guided generation (``generate(..., algorithm="cma-es", property=NAME)``) looks its
objective up here, so the core owns the vocabulary and the families only run the
search. A property is a *batch* scorer: canonical, valid SMILES in, one float per
molecule out, higher is better. Batches let a model be the property (one forward
pass per optimiser iteration); for example a fine-tuned ``predict`` model::

    from bionemo_lite.properties import register_property

    predictor = bionemo_lite.load("my_solubility_head")
    register_property("solubility", lambda smiles: predictor.predict(smiles).values)
    megamolbart.generate(seeds, algorithm="cma-es", property="solubility")

Registered names are known to the process that registered them (the Python API,
or a server whose start-up code registers them); the HTTP and CLI doors pass the
name through like any other option.

Built-ins:
  * ``qed``: RDKit's quantitative estimate of drug-likeness (0-1).
  * ``plogp``: penalised logP as in the JT-VAE / GCPN / MolMIM benchmarks, unnormalised:
    Wildman-Crippen logP - SA score (Ertl & Schuffenhauer, RDKit's
    ``Contrib/SA_Score/sascorer.py``) - max(0, largest ring size - 6).
  * ``logp``: Wildman-Crippen logP.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from types import ModuleType
from typing import TYPE_CHECKING

from . import chem
from .errors import BionemoLiteError, InvalidInputError

if TYPE_CHECKING:
    from rdkit.Chem import Mol

PropertyFn = Callable[[Sequence[str]], Sequence[float]]
"""A batch scorer: canonical valid SMILES in, one finite float per molecule out (higher is better)."""

GUIDED_ALGORITHMS: tuple[str, ...] = ("cma-es",)
"""Search algorithms of guided generation (the unguided default is ``"sampling"``)."""
DEFAULT_ITERATIONS = 10
DEFAULT_PARTICLES = 20  # MolMIM's and bionemo-controlled-generation's population size
LARGE_RING = 6  # rings larger than this are penalised in plogp, one unit per extra atom

_registry: dict[str, PropertyFn] = {}
_lock = threading.Lock()


def guided_decodes(options: dict[str, object]) -> int | None:
    """Decodes a guided ``generate`` spends per seed (iterations x particles), or None when the
    options ask for no guided search; for cost rules that run before the model checks the options
    (an option of the wrong type counts as its default: the model then refuses it)."""
    if options.get("algorithm") not in GUIDED_ALGORITHMS:
        return None

    def count(key: str, default: int) -> int:
        value = options.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default

    return count("iterations", DEFAULT_ITERATIONS) * count("particles", DEFAULT_PARTICLES)


# ----- built-in properties -------------------------------------------------------------------
@lru_cache(maxsize=1)
def _sascorer() -> ModuleType:
    """RDKit's ``Contrib/SA_Score/sascorer.py``, loaded once from the installed RDKit."""
    import os

    from rdkit.Chem import RDConfig

    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
    spec = importlib.util.spec_from_file_location("bionemo_lite_sascorer", path)
    if spec is None or spec.loader is None or not os.path.exists(path):
        raise BionemoLiteError(f"RDKit's SA score module is missing ({path}); reinstall rdkit")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sa_score(mol: Mol) -> float:
    """Synthetic accessibility score (Ertl & Schuffenhauer 2009): 1 (easy) to 10 (hard)."""
    return float(_sascorer().calculateScore(mol))


def ring_penalty(mol: Mol) -> int:
    """Atoms beyond 6 in the largest ring (0 without rings larger than 6)."""
    rings = mol.GetRingInfo().AtomRings()
    return max(0, max((len(r) for r in rings), default=0) - LARGE_RING)


def penalized_logp(mol: Mol) -> float:
    """logP - SA score - ring penalty (unnormalised, as the JT-VAE / GCPN / MolMIM benchmarks)."""
    return chem.logp(mol) - sa_score(mol) - ring_penalty(mol)


def molecule_property(fn: Callable[[Mol], float]) -> PropertyFn:
    """A batch scorer from a function of one RDKit molecule."""

    def score(smiles: Sequence[str]) -> list[float]:
        return [float(fn(chem.parse_smiles(s))) for s in smiles]

    score.__doc__ = fn.__doc__
    return score


# ----- the registry ---------------------------------------------------------------------------
def register_property(name: str, fn: PropertyFn, *, replace: bool = False) -> None:
    """Make `fn` available as ``property=name`` to guided generation.

    Args:
        name: the option value that selects it (e.g. ``"solubility"``).
        fn: canonical valid SMILES in, one finite float per molecule out, higher is better.
        replace: allow replacing a property of the same name (built-ins included).

    Raises:
        ValueError: an empty name, a name already taken (without `replace`), or `fn` not callable.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a property needs a non-empty name")
    if not callable(fn):
        raise ValueError(f"property {name!r}: {fn!r} is not callable")
    with _lock:
        if name in _registry and not replace:
            raise ValueError(f"property {name!r} is already registered; pass replace=True to replace it")
        _registry[name] = fn


def unregister_property(name: str) -> None:
    """Forget a registered property (no error when it is not registered)."""
    with _lock:
        _registry.pop(name, None)


def property_names() -> tuple[str, ...]:
    """The registered property names, sorted."""
    with _lock:
        return tuple(sorted(_registry))


def get_property(name: object) -> PropertyFn:
    """The scorer registered as `name`.

    Raises:
        InvalidInputError: not a string or not registered (naming the option and the known names).
    """
    with _lock:
        fn = _registry.get(name) if isinstance(name, str) else None
    if fn is None:
        raise InvalidInputError(f"property must be one of {', '.join(property_names())}; got {name!r}")
    return fn


def score_molecules(name: str, smiles: Sequence[str]) -> list[float]:
    """`name`'s values for valid canonical `smiles`, checked: one finite float per molecule.

    Raises:
        InvalidInputError: an unknown property.
        BionemoLiteError: the scorer returned the wrong number of values or a non-finite one.
    """
    fn = get_property(name)
    if not smiles:
        return []
    values = [float(v) for v in fn(list(smiles))]
    if len(values) != len(smiles):
        raise BionemoLiteError(f"property {name!r} returned {len(values)} values for {len(smiles)} molecules")
    bad = next((s for s, v in zip(smiles, values) if not math.isfinite(v)), None)
    if bad is not None:
        raise BionemoLiteError(f"property {name!r} returned a non-finite value for {bad!r}")
    return values


register_property("qed", molecule_property(chem.qed))
register_property("logp", molecule_property(chem.logp))
register_property("plogp", molecule_property(penalized_logp))
