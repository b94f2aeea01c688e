"""Tiny fine-tunes for tests: a labelled table a tiny random encoder can learn, and a registered fine-tune.

The label is a fixed function of the sequence (the fraction of one residue type, or the count
of one atom type in a SMILES), so a head on a random-weight encoder's embeddings can learn it:
the tests then check learning, not biology.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from bionemo_lite.spec import ModelSpec

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
TINY_BASE = "esm2_t6_8M_UR50D"
TINY_NAME = "finetuned_tiny"
SMILES_PARTS = ("C", "CC", "O", "N", "C(=O)", "c1ccccc1", "CO", "CN", "C(Cl)", "C(C)", "c1ccncc1", "C1CCCC1",
                "C1CCOC1", "c1ccoc1")


def residue_fraction_rows(n: int, residue: str = "K", seed: int = 0, lengths: tuple[int, int] = (20, 60)
                          ) -> list[tuple[str, str, float]]:
    """``(id, sequence, fraction of residue)`` rows; the fraction varies from 0 to about 0.5."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        length = int(rng.integers(*lengths))
        share = rng.uniform(0, 0.5)
        seq = "".join(residue if rng.random() < share else AMINO_ACIDS[rng.integers(20)] for _ in range(length))
        rows.append((f"p{i}", seq, seq.count(residue) / len(seq)))
    return rows


def atom_count_rows(n: int, seed: int = 0) -> list[tuple[str, str, float]]:
    """``(id, SMILES, number of oxygen atoms)`` rows of small chain molecules."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        smiles = "C" + "".join(SMILES_PARTS[rng.integers(len(SMILES_PARTS))] for _ in range(int(rng.integers(2, 7))))
        rows.append((f"m{i}", smiles, float(smiles.count("O"))))
    return rows


def write_table(path: str | Path, rows: list[tuple[str, str, object]], target: str = "target",
                text_column: str = "sequence") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", text_column, target])
        writer.writerows(rows)
    return path


def tiny_spec(name: str = TINY_NAME) -> ModelSpec:
    """The spec of the fine-tune `tiny_checkpoint` writes (register it to list the variant before it exists)."""
    from bionemo_lite.finetune.card import FAMILY, LOADER

    return ModelSpec(name=name, family=FAMILY, verbs=frozenset({"predict"}), loader=LOADER, input_kind="protein",
                     max_length=1022, description="a tiny test fine-tune")


def tiny_checkpoint(folder: str | Path, name: str = TINY_NAME) -> Path:
    """A head fine-tune of a tiny random ESM-2 (written beside it) on a residue-fraction table,
    registered as `name` (so another process, e.g. tritonserver, finds it by name). Returns its folder."""
    import warnings

    from bionemo_lite.finetune import FinetuneOptions
    from bionemo_lite.finetune.api import finetune
    from bionemo_lite.zoo.esm2.testing import tiny_checkpoint as tiny_esm2

    folder = Path(folder)
    base = tiny_esm2(folder / "base")
    data = write_table(folder / "data.csv", residue_fraction_rows(60), "frac_k")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny base is not the published shape
        finetune(TINY_BASE, data, "frac_k", folder / "finetune", FinetuneOptions(max_epochs=5, progress=False),
                 weights=base, name=name)
    return folder / "finetune"
