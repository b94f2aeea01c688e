"""``bionemo-lite contacts``: per-record L x L contact maps, checked against fair-esm's
``return_contacts=True`` on the same tiny random-weight checkpoint (with its contact regression)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bionemo_lite.cli import app
from bionemo_lite.io import read_contacts
from esm2_fixtures import ESM2_NAME, PARITY_TOL, SEQUENCES, fair_run, max_diff

runner = CliRunner()
pytestmark = [pytest.mark.filterwarnings("ignore:.*is not the published esm2_t6_8M_UR50D"),
              pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def fair_contacts(fair_ref) -> dict[str, np.ndarray]:
    maps = fair_run(fair_ref, list(SEQUENCES.values()), contacts=True)["contacts"].numpy()
    return {rid: maps[i, : len(seq), : len(seq)] for i, (rid, seq) in enumerate(SEQUENCES.items())}


@pytest.fixture
def fasta(tmp_path) -> Path:
    path = tmp_path / "in.fasta"
    path.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in {**SEQUENCES, "bad": "MK1V"}.items()))
    return path


@pytest.mark.parametrize("suffix, numerics", [(".h5", "reference"), (".npz", "reference"), (".parquet", "fast")])
def test_contacts_equal_fair_esm(esm2_fair_checkpoint, fair_contacts, fasta, tmp_path, suffix, numerics):
    out = tmp_path / f"contacts{suffix}"
    result = runner.invoke(app, ["contacts", ESM2_NAME, str(fasta), "-o", str(out), "--weights",
                                 str(esm2_fair_checkpoint), "--numerics", numerics, "-q"])
    assert result.exit_code == 0, result.output
    assert f"wrote {len(SEQUENCES)} records to {out}; 1 failed" in result.stderr
    back = read_contacts(out)
    assert back.ids == list(SEQUENCES)
    worst = 0.0
    for rid, seq in SEQUENCES.items():
        assert back.arrays[rid].shape == (len(seq), len(seq)) and back.arrays[rid].dtype == np.float32
        worst = max(worst, max_diff(back.arrays[rid], fair_contacts[rid]))
    print(f"contacts ({numerics}) vs fair-esm return_contacts=True: max abs diff {worst:.2e}")
    assert worst <= PARITY_TOL
    with open(f"{out}.errors.csv", newline="") as fh:
        [error] = list(csv.DictReader(fh))
    assert error["id"] == "bad" and error["reason"].startswith("position 3: invalid residue '1'")
    if suffix != ".npz":
        assert back.model == ESM2_NAME and back.lengths == {rid: len(s) for rid, s in SEQUENCES.items()}


def test_contacts_resume(esm2_fair_checkpoint, fasta, tmp_path):
    out = tmp_path / "c.h5"
    args = ["contacts", ESM2_NAME, str(fasta), "-o", str(out), "--weights", str(esm2_fair_checkpoint), "-q"]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and f"({len(SEQUENCES)} resumed)" in again.stderr


def test_a_model_without_contacts_is_refused_before_it_loads(fasta, tmp_path):
    result = runner.invoke(app, ["contacts", "megamolbart", str(fasta), "-o", str(tmp_path / "c.h5"),
                                 "--weights", str(tmp_path / "nowhere.nemo")])
    assert result.exit_code == 1
    assert "model 'megamolbart' cannot predict contacts" in result.stderr and "not found" not in result.stderr
