"""``bionemo-lite fold esmfold_v1`` end to end on the tiny random-weight ESMFold, against the Python API."""

from __future__ import annotations

import csv
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import bionemo_lite
from bionemo_lite.cli import app
from bionemo_lite.structures import parse_structure
from bionemo_lite.zoo.esmfold.testing import write_tiny_esmfold_dir

MODEL = "esmfold_v1"
runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore:.*is not the published esmfold_v1")
RECORDS = {
    "mono": "MKTAYIAKQRQISFVKSHFSRQ",
    "bad_residue": "MKTJAYIAK",
    "dimer": "mktayiakqr:GSHWLVEA",
    "empty_chain": "MKTAYIAK::GSHW",
    "too_long": "A" * 1023,
    "unknown": "MKXAY",
}
GOOD = ("mono", "dimer", "unknown")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_tiny_esmfold_dir(tmp_path_factory.mktemp("esmfold") / "esmfold_tiny")


@pytest.fixture(scope="module")
def model(weights):
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bionemo_lite.load(MODEL, weights=weights)


@pytest.fixture
def fasta(tmp_path) -> Path:
    path = tmp_path / "in.fasta"
    path.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in RECORDS.items()))
    return path


def test_fold_command_writes_a_structure_per_record(fasta, weights, model, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["fold", MODEL, str(fasta), "-o", str(out), "--weights", str(weights), "-q"])
    assert result.exit_code == 0, result.output
    summary = {row["id"]: row for row in _rows(out / "summary.csv")}
    assert sorted(summary) == sorted(GOOD)
    for rid in GOOD:
        expected = model.fold(RECORDS[rid].upper())
        row = summary[rid]
        path = Path(row["path"])
        assert path == out / f"{rid}.pdb" and path.read_text() == expected.pdb
        assert int(row["length"]) == len(RECORDS[rid].replace(":", ""))
        assert float(row["mean_plddt"]) == pytest.approx(expected.mean_plddt, abs=1e-4)
        assert float(row["ptm"]) == pytest.approx(expected.ptm, abs=1e-6)
    chains = [c.id for c in parse_structure((out / "dimer.pdb").read_text())[0]]
    assert chains == ["A", "B"]

    errors = {row["id"]: row["reason"] for row in _rows(out / "errors.csv")}
    assert sorted(errors) == ["bad_residue", "empty_chain", "too_long"]
    assert "position 4" in errors["bad_residue"] and "'J'" in errors["bad_residue"]
    assert "empty chain" in errors["empty_chain"]
    assert "1023 residues" in errors["too_long"] and "1022" in errors["too_long"]
    assert not (out / "too_long.pdb").exists()


def test_fold_command_mmcif_and_options(weights, model, tmp_path):
    fasta = tmp_path / "one.fasta"
    fasta.write_text(">x\nMKTAYIAKQRQ\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["fold", MODEL, str(fasta), "-o", str(out), "--weights", str(weights), "-q",
                                 "--format", "cif", "--num-recycles", "0", "--attention-chunk-size", "4"])
    assert result.exit_code == 0, result.output
    text = (out / "x.cif").read_text()
    expected = model.fold("MKTAYIAKQRQ", num_recycles=0, chunk_size=4)
    parsed = {(a.get_parent().id[1], a.get_id()): a for a in parse_structure(text, "mmcif").get_atoms()}
    want = {(a.get_parent().id[1], a.get_id()): a for a in parse_structure(expected.mmcif, "mmcif").get_atoms()}
    assert parsed.keys() == want.keys()
    assert max(float(np.abs(parsed[k].coord - want[k].coord).max()) for k in parsed) < 2e-3
    default = model.fold("MKTAYIAKQRQ")  # recycling changes the structure: the option got through
    assert text != default.mmcif


@pytest.mark.slow
def test_installed_command(fasta, weights, tmp_path):
    """The console script, as a user runs it (a separate process)."""
    exe = Path(sys.executable).parent / "bionemo-lite"
    out = tmp_path / "out"
    done = subprocess.run([str(exe), "fold", MODEL, str(fasta), "-o", str(out), "--weights", str(weights), "-q"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    # -q: no log lines below WARNING and no progress bar, transformers' "Loading weights" bar included.
    assert "INFO" not in done.stderr and "Loading weights" not in done.stderr and "it/s" not in done.stderr
    assert sorted(row["id"] for row in _rows(out / "summary.csv")) == sorted(GOOD)
    assert len(_rows(out / "errors.csv")) == 3
