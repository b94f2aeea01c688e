"""Train / validation / test splits: random, by sequence identity (proteins) or by scaffold (SMILES).

A random split of near-duplicates over-states how well a model generalises; the
grouped splits keep each group (similar sequences, one Bemis-Murcko scaffold) on one
side. Groups are assigned to test, then validation, then train, in a seeded random
order, until each held-out split has its share of records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import InvalidInputError

SplitMethod = Literal["random", "identity", "scaffold"]
SPLIT_METHODS: tuple[str, ...] = ("random", "identity", "scaffold")
KMER = 3


@dataclass(frozen=True)
class Split:
    """Record indices of each part (disjoint, together all records)."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def _kmers(sequence: str, k: int = KMER) -> frozenset[str]:
    return frozenset(sequence[i : i + k] for i in range(max(1, len(sequence) - k + 1)))


def identity_groups(sequences: Sequence[str], threshold: float = 0.5) -> list[int]:
    """Greedy clustering by shared 3-mers (Jaccard similarity >= `threshold` joins a cluster's
    first member): a stand-in for sequence-identity clustering that needs no external tool."""
    centres: list[frozenset[str]] = []
    groups: list[int] = []
    for sequence in sequences:
        kmers = _kmers(sequence)
        for g, centre in enumerate(centres):
            if len(kmers & centre) / max(1, len(kmers | centre)) >= threshold:
                groups.append(g)
                break
        else:
            centres.append(kmers)
            groups.append(len(centres) - 1)
    return groups


def scaffold_groups(smiles: Sequence[str], ids: Sequence[str] | None = None) -> list[int]:
    """One group per Bemis-Murcko scaffold (RDKit); acyclic molecules share the empty scaffold.

    Raises:
        InvalidInputError: a SMILES RDKit cannot parse (its index as the record).
    """
    from rdkit import Chem, RDLogger
    from rdkit.Chem.Scaffolds import MurckoScaffold

    RDLogger.DisableLog("rdApp.*")
    ids: dict[str, int] = {}
    groups = []
    for i, text in enumerate(smiles):
        mol = Chem.MolFromSmiles(text)
        if mol is None:
            raise InvalidInputError("RDKit cannot parse this SMILES for a scaffold split",
                                    record=ids[i] if ids is not None else i)
        scaffold = MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)
        groups.append(ids.setdefault(scaffold, len(ids)))
    return groups


def split_indices(
    groups: Sequence[int], fractions: tuple[float, float], seed: int
) -> Split:
    """Assign whole groups to test and validation (shares `fractions`), the rest to train.

    A group larger than a held-out share goes to train (like chemprop's balanced scaffold split):
    one big group (e.g. every acyclic molecule) would otherwise fill a held-out split alone.
    """
    n = len(groups)
    rng = np.random.default_rng(seed)
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    wanted = [max(1, round(f * n)) for f in fractions]
    big = [g for g in members if len(members[g]) > min(wanted)]
    order = [g for g in members if g not in set(big)]
    rng.shuffle(order)
    parts: list[list[int]] = [[], [], []]  # test, validation, train
    part = 0
    for g in order:
        while part < 2 and len(parts[part]) >= wanted[part]:
            part += 1
        parts[part].extend(members[g])
    for g in big:
        parts[2].extend(members[g])
    test, validation, train = (np.asarray(sorted(p), dtype=np.int64) for p in parts)
    if not len(train) or not len(validation) or not len(test):
        raise InvalidInputError(f"the split left an empty part (train {len(train)}, validation {len(validation)}, "
                                f"test {len(test)}); use more records or a random split")
    return Split(train, validation, test)


def make_split(
    method: str, sequences: Sequence[str], input_kind: str, fractions: tuple[float, float] = (0.15, 0.15),
    seed: int = 0, identity_threshold: float = 0.5, ids: Sequence[str] | None = None,
) -> Split:
    """The `method` split of `sequences` (fractions: test, validation; `ids` name records in errors).

    Raises:
        InvalidInputError: an unknown method, ``identity`` for SMILES or ``scaffold`` for proteins.
    """
    if method not in SPLIT_METHODS:
        raise InvalidInputError(f"split must be one of {', '.join(SPLIT_METHODS)}, got {method!r}")
    if method == "identity" and input_kind != "protein":
        raise InvalidInputError("the identity split is for proteins; use split='scaffold' for SMILES")
    if method == "scaffold" and input_kind != "smiles":
        raise InvalidInputError("the scaffold split is for SMILES; use split='identity' for proteins")
    if method == "random":
        groups: list[int] = list(range(len(sequences)))
    elif method == "identity":
        groups = identity_groups(sequences, identity_threshold)
    else:
        groups = scaffold_groups(sequences, ids)
    return split_indices(groups, fractions, seed)
