"""`bionemo-lite fold` with a tiny random-weight ESMFold checkpoint (Hugging Face layout)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from Bio.PDB import PDBParser
from typer.testing import CliRunner

import bionemo_lite
from bionemo_lite.cli import app
from bionemo_lite.jobs import structure_filename
from esmfold_fixtures import write_tiny_esmfold_dir

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*is not the published esmfold_v1"),
    pytest.mark.usefixtures("one_torch_thread"),
]
runner = CliRunner()
RECORDS = {"p1": "MKTAYIAKQRQISFVK", "bad": "MKJAYI", "dimer/AB": "MKTAYI:GSHMLE", "p2": "gshmledpvag"}


@pytest.fixture(scope="module")
def esmfold_dir(tmp_path_factory) -> Path:
    return write_tiny_esmfold_dir(tmp_path_factory.mktemp("esmfold") / "esmfold_v1")


@pytest.fixture(scope="module")
def folder(esmfold_dir):
    return bionemo_lite.load("esmfold_v1", weights=esmfold_dir)


@pytest.fixture
def fasta(tmp_path) -> Path:
    path = tmp_path / "in.fasta"
    path.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in RECORDS.items()))
    return path


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_fold_writes_a_structure_per_record(folder, esmfold_dir, fasta, tmp_path):
    outdir = tmp_path / "structures"
    result = runner.invoke(app, ["fold", "esmfold_v1", str(fasta), "-o", str(outdir), "--weights", str(esmfold_dir),
                                 "--num-recycles", "1", "--chunk-size", "4", "-q"])
    assert result.exit_code == 0, result.output
    assert "wrote 3 records" in result.stderr and "1 failed" in result.stderr
    summary = _csv(outdir / "summary.csv")
    assert [r["id"] for r in summary] == ["p1", "dimer/AB", "p2"]
    for row in summary:
        seq = RECORDS[row["id"]]
        want = folder.fold(seq, num_recycles=1, chunk_size=4, record_id=row["id"])
        path = Path(row["path"])
        assert path.parent == outdir and path.name == structure_filename(row["id"], "pdb")
        assert path.read_text() == want.pdb  # the same prediction as the Python API
        assert int(row["length"]) == len(seq.replace(":", ""))
        assert float(row["mean_plddt"]) == pytest.approx(want.mean_plddt, abs=1e-9)
        assert float(row["ptm"]) == pytest.approx(want.ptm, abs=1e-9)
        structure = PDBParser(QUIET=True).get_structure(row["id"], path)
        assert sum(1 for _ in structure.get_residues()) == len(seq.replace(":", ""))
    assert [c.id for c in PDBParser(QUIET=True).get_structure("d", Path(summary[1]["path"])).get_chains()] == ["A", "B"]
    [error] = _csv(outdir / "errors.csv")
    assert error["id"] == "bad" and error["reason"].startswith("position 3: invalid residue 'J'")
    assert sorted(p.name for p in outdir.iterdir()) == sorted(
        ["summary.csv", "errors.csv", "job.sqlite", *(structure_filename(r["id"], "pdb") for r in summary)])


def test_fold_cif_and_resume(esmfold_dir, fasta, tmp_path):
    outdir = tmp_path / "cif"
    args = ["fold", "esmfold_v1", str(fasta), "-o", str(outdir), "--weights", str(esmfold_dir), "--format", "cif",
            "--num-recycles", "0", "-q"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    paths = [Path(r["path"]) for r in _csv(outdir / "summary.csv")]
    assert all(p.suffix == ".cif" and p.read_text().startswith("data_") for p in paths)
    # The bad record keeps the manifest; a re-run predicts nothing again for the finished ones.
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "(3 resumed)" in second.stderr


def test_fold_msa_for_a_model_without_msa_fails_that_record_only(esmfold_dir, fasta, tmp_path):
    msa = tmp_path / "msa"
    msa.mkdir()
    (msa / "p1.a3m").write_text(">p1\nMKTAYIAKQRQISFVK\n>hit\nMKTAYIAKQRQISFVR\n")
    outdir = tmp_path / "out"
    result = runner.invoke(app, ["fold", "esmfold_v1", str(fasta), "-o", str(outdir), "--weights", str(esmfold_dir),
                                 "--msa", str(msa), "--num-recycles", "0", "-q"])
    assert result.exit_code == 0, result.output
    errors = {e["id"]: e["reason"] for e in _csv(outdir / "errors.csv")}
    assert set(errors) == {"p1", "bad"} and "does not accept the option(s) msa" in errors["p1"]
    assert [r["id"] for r in _csv(outdir / "summary.csv")] == ["dimer/AB", "p2"]
