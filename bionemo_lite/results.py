"""Typed results of the verbs (embed, score, generate, fold, decode). Arrays are numpy; everything has `to_dict()`
for JSON (used by the HTTP service) so no caller has to guess the layout."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .windows import Windows


@dataclass(frozen=True)
class RecordError:
    """One record that failed while the others went on."""

    id: str
    index: int
    reason: str
    position: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "index": self.index, "position": self.position, "reason": self.reason}


def _tolist(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, list):
        return [_tolist(v) for v in x]
    return x


@dataclass
class Embeddings:
    """Result of ``embed``.

    Attributes:
        model: variant name.
        ids: record ids, in input order (failed records left out, see `errors`).
        lengths: residues (or tokens) embedded per record, after truncation.
        layers: the layers returned, as absolute indices (0 = embedding layer).
        pooling: ``"mean"``, ``"bos"`` or ``"per_residue"``.
        by_layer: per layer, a float32 array ``[N, D]`` (pooled) or a list of
            ``[L_i, D]`` arrays (``per_residue``).
        truncated: ids of records cut to the model's maximum length.
        errors: records that failed, with the reason.
        windowed: records read through overlapping windows (``on_too_long="window"``), by id, with
            the windows used (`bionemo_lite.windows.Windows`: size, stride, count, spans).
    """

    model: str
    ids: list[str]
    lengths: list[int]
    layers: tuple[int, ...]
    pooling: str
    by_layer: dict[int, Any]
    truncated: list[str] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)
    windowed: dict[str, Windows] = field(default_factory=dict)

    @property
    def embeddings(self) -> np.ndarray | list[np.ndarray]:
        """Embeddings of the first requested layer."""
        return self.by_layer[self.layers[0]]

    @property
    def dim(self) -> int:
        emb = self.embeddings
        if isinstance(emb, np.ndarray):
            return int(emb.shape[-1])
        return int(emb[0].shape[-1]) if emb else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "ids": self.ids,
            "embeddings": _tolist(self.embeddings),
            "dim": self.dim,
            "layer": self.layers[0],
            "layers": list(self.layers),
            "pooling": self.pooling,
            "lengths": self.lengths,
            "truncated": self.truncated,
            "errors": [e.to_dict() for e in self.errors],
            "windowed": {rid: w.to_dict() for rid, w in self.windowed.items()},
        }


@dataclass
class Scores:
    """Result of ``score``: one float per record (``pll``, SMILES log-likelihood)
    or one per mutation (``masked_marginals``, ``wt_marginals``).

    ``windowed``: records read through overlapping windows (``on_too_long="window"``), by id (for the
    mutation methods, the wild type's), with the windows used (`bionemo_lite.windows.Windows`).
    """

    model: str
    method: str
    ids: list[str]
    scores: np.ndarray
    mutations: list[str] | None = None
    truncated: list[str] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)
    windowed: dict[str, Windows] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "method": self.method,
            "ids": self.ids,
            "scores": _tolist(self.scores),
            "mutations": self.mutations,
            "truncated": self.truncated,
            "errors": [e.to_dict() for e in self.errors],
            "windowed": {rid: w.to_dict() for rid, w in self.windowed.items()},
        }


@dataclass
class GeneratedRecord:
    """The samples generated from one seed record."""

    id: str
    seed: str
    generated: list[str]
    scores: list[float]
    properties: dict[str, list[float]] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    # Guided generation only: per iteration, "best" property so far and "mean" property of the
    # iteration's valid molecules (None where there was none), and the "valid" / "feasible" fractions.
    trace: dict[str, list[float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "seed": self.seed,
            "generated": self.generated,
            "scores": self.scores,
            "properties": self.properties,
            "stats": self.stats,
        }
        if self.trace:
            out["trace"] = self.trace
        return out


@dataclass
class Generated:
    """Result of ``generate``: per seed record, the new sequences or molecules."""

    model: str
    records: list[GeneratedRecord]
    errors: list[RecordError] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "generated": [r.to_dict() for r in self.records],
            "errors": [e.to_dict() for e in self.errors],
        }


@dataclass(frozen=True)
class Relaxation:
    """An AMBER-relaxed copy of a predicted structure, with what the relaxation changed
    (`bionemo_lite.relax.relax_structure` makes it).

    Attributes:
        pdb / mmcif: the relaxed structure (hydrogens included; pLDDT kept in the B-factors);
            `pdb` is None when PDB cannot hold it, `mmcif` is None when the fold gave no mmCIF.
        energy_before / energy_after: AMBER ff14SB potential energy in kJ/mol (restraints not
            counted) of the raw structure (hydrogens and missing atoms added) and of the relaxed one.
        rmsd: root-mean-square distance in Angstrom that the raw structure's heavy atoms moved
            (no superposition: the restraints keep the frame).
        clashes_before / clashes_after: clashing heavy-atom pairs (`bionemo_lite.relax.count_clashes`).
        iterations: restrained minimisations run (openfold's violation-driven outer loop).
        seconds: wall time of the relaxation.
        platform: the OpenMM platform that ran it (``"CPU"``, ``"CUDA"``).
    """

    pdb: str | None
    mmcif: str | None
    energy_before: float
    energy_after: float
    rmsd: float
    clashes_before: int
    clashes_after: int
    iterations: int
    seconds: float
    platform: str

    def to_dict(self, include_pdb: bool = True, include_mmcif: bool = True) -> dict[str, Any]:
        return {
            "pdb": self.pdb if include_pdb else None,
            "mmcif": self.mmcif if include_mmcif else None,
            "energy_before": self.energy_before,
            "energy_after": self.energy_after,
            "rmsd": self.rmsd,
            "clashes_before": self.clashes_before,
            "clashes_after": self.clashes_after,
            "iterations": self.iterations,
            "seconds": self.seconds,
            "platform": self.platform,
        }


@dataclass
class Structure:
    """Result of ``fold``: a predicted structure with its confidences.

    Attributes:
        plddt: per-residue pLDDT on a 0-100 scale.
        pae: predicted aligned error matrix ``[L, L]`` in Angstrom, if the
            model predicts it.
        relaxed: the AMBER-relaxed structure and its figures when the fold was
            asked to relax (``relax=True``), else None; `pdb` / `mmcif` stay the raw prediction.
    """

    model: str
    id: str
    sequence: str
    pdb: str | None
    mmcif: str | None
    plddt: np.ndarray
    ptm: float | None = None
    iptm: float | None = None
    pae: np.ndarray | None = None
    chains: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    relaxed: Relaxation | None = None

    @property
    def mean_plddt(self) -> float:
        return float(np.mean(self.plddt)) if len(self.plddt) else float("nan")

    def to_dict(self, include_pdb: bool = True, include_mmcif: bool = True) -> dict[str, Any]:
        return {
            "model": self.model,
            "id": self.id,
            "sequence": self.sequence,
            "chains": self.chains,
            "pdb": self.pdb if include_pdb else None,
            "mmcif": self.mmcif if include_mmcif else None,
            "plddt": _tolist(self.plddt),
            "mean_plddt": self.mean_plddt,
            "ptm": self.ptm,
            "iptm": self.iptm,
            "pae": _tolist(self.pae) if self.pae is not None else None,
            **{k: _tolist(v) for k, v in self.extra.items()},
            # After `extra`: a structure rebuilt from JSON (Triton's client) carries a stale "relaxed" there.
            "relaxed": self.relaxed.to_dict(include_pdb, include_mmcif) if self.relaxed is not None else None,
        }


class Decoded(list):
    """Result of ``decode``: the decoded strings, in input order (a ``list[str]``, so it compares
    equal to a plain list), with the model that decoded them.

    The strings are not validated: a decoded string may not be a valid molecule.
    """

    def __init__(self, model: str, generated: Iterable[str] = ()):
        super().__init__(str(s) for s in generated)
        self.model = model

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "generated": list(self)}


@dataclass
class Predictions:
    """Result of ``predict`` (a fine-tuned model): one value per record (regression) or one row of class
    probabilities per record (classification).

    Attributes:
        model: the fine-tune's name.
        task: ``"regression"`` or ``"classification"``.
        ids: record ids, in input order (failed records left out, see `errors`).
        values: regression: float64 ``[N]``; classification: the most probable class label per record.
        probabilities: classification: float64 ``[N, C]`` in the order of `classes`; None for regression.
        classes: classification: the class labels (as strings); None for regression.
        target: the column the model was trained to predict.
    """

    model: str
    task: str
    ids: list[str]
    values: list[Any]
    probabilities: np.ndarray | None = None
    classes: list[str] | None = None
    target: str = ""
    truncated: list[str] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "task": self.task,
            "target": self.target,
            "ids": self.ids,
            "values": _tolist(self.values),
            "probabilities": _tolist(self.probabilities) if self.probabilities is not None else None,
            "classes": self.classes,
            "truncated": self.truncated,
            "errors": [e.to_dict() for e in self.errors],
        }
