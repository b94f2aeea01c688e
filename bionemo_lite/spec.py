"""Model cards: one frozen `ModelSpec` per variant, declared by each plugin.

Specs are plain data (no torch import), so listing models is instant; the
`loader` is a ``"module:function"`` string imported only by `load()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from .errors import InvalidInputError
from .pooling import DEFAULT_POOLINGS, POOLINGS

Verb = Literal["embed", "fold", "generate", "score"]
InputKind = Literal["protein", "smiles"]
CORE_VERBS: tuple[str, ...] = ("embed", "fold", "generate", "score")


@dataclass(frozen=True)
class WeightFile:
    """One file of a published checkpoint."""

    filename: str
    url: str
    sha256: str | None = None
    size_bytes: int | None = None
    required: bool = True


@dataclass(frozen=True)
class WeightSource:
    """Where a variant's official weights come from.

    Attributes:
        format: checkpoint format the plugin's loader reads (``"fair-esm"``,
            ``"huggingface"``, ``"nemo"``, ...).
        files: the files to fetch; they land together in one cache folder.
        entry: the file the loader is pointed at; None means the folder itself
            (Hugging Face directories).
        homepage: where a person can read about / fetch the weights by hand.
    """

    format: str
    files: tuple[WeightFile, ...]
    entry: str | None = None
    homepage: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """Everything known about one model variant before its weights are loaded.

    Attributes:
        name: the upstream variant name, e.g. ``"esm2_t33_650M_UR50D"``.
        family: the plugin family (``"esm2"``, ``"prott5"``, ...).
        verbs: what the model can do; core verbs and family extras (``"decode"``).
        loader: ``"package.module:function"`` called as
            ``function(spec, path, device=..., dtype=..., **options)``.
        input_kind: ``"protein"`` or ``"smiles"``.
        max_length: the longest input (residues or tokens) the model accepts.
        config: the published architecture (layers, dims, ...).
        license: license of code and weights.
        weights: official sources, the first one is what `weights pull` fetches.
        params: number of parameters, for listings.
        description: one line for listings.
        poolings: the names of the ``embed`` poolings this family offers, each
            one of `bionemo_lite.pooling.POOLINGS` (checked by front doors
            before any weights are read).
        numerics: the arithmetic modes the family's loader accepts as
            ``numerics=`` (e.g. ``("fast", "reference")``); empty for families
            with one way of computing, which ignore the option.
        score_methods: the ``score`` methods the family offers, the first is
            the default (checked by front doors before any weights are read).
    """

    name: str
    family: str
    verbs: frozenset[str]
    loader: str
    input_kind: InputKind = "protein"
    max_length: int = 1022
    config: Mapping[str, Any] = field(default_factory=dict)
    license: str = "unknown"
    weights: tuple[WeightSource, ...] = ()
    params: int | None = None
    description: str = ""
    poolings: tuple[str, ...] = DEFAULT_POOLINGS
    numerics: tuple[str, ...] = ()
    score_methods: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "verbs", frozenset(self.verbs))
        object.__setattr__(self, "config", MappingProxyType(dict(self.config)))
        if not self.name or not self.family:
            raise ValueError("ModelSpec needs a name and a family")
        if ":" not in self.loader:
            raise ValueError(f"{self.name}: loader must be 'module:function', got {self.loader!r}")
        unknown = [p for p in self.poolings if p not in POOLINGS]
        if unknown:
            raise ValueError(f"{self.name}: poolings {unknown} are not in bionemo_lite.pooling.POOLINGS")

    def score_method(self, method: str | None = None) -> str:
        """`method` if the family offers it (None: the default, the first declared).

        Raises:
            InvalidInputError: a method the family does not offer (the message lists them).
        """
        if method is None and self.score_methods:
            return self.score_methods[0]
        if method not in self.score_methods:
            raise InvalidInputError(f"score method must be one of {', '.join(self.score_methods)}; got {method!r}")
        return method

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (used by `/v1/models` and the CLI)."""
        return {
            "name": self.name,
            "family": self.family,
            "verbs": sorted(self.verbs),
            "input_kind": self.input_kind,
            "max_length": self.max_length,
            "params": self.params,
            "license": self.license,
            "config": dict(self.config),
            "description": self.description,
            **({"poolings": list(self.poolings)} if "embed" in self.verbs else {}),
            **({"numerics": list(self.numerics)} if self.numerics else {}),
            **({"score_methods": list(self.score_methods)} if self.score_methods else {}),
        }
