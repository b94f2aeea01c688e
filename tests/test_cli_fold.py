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
from bionemo_lite.zoo.esmfold.testing import write_tiny_esmfold_dir

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
                                 "--num-recycles", "1", "--attention-chunk-size", "4", "-q"])
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


def test_fold_msa_for_a_model_without_msa_is_refused_before_it_loads(fasta, tmp_path):
    msa = tmp_path / "msa"
    msa.mkdir()
    (msa / "p1.a3m").write_text(">p1\nMKTAYIAKQRQISFVK\n>hit\nMKTAYIAKQRQISFVR\n")
    outdir = tmp_path / "out"
    # No weights at that path: had the model been loaded first, this would be "not found" (exit 1).
    result = runner.invoke(app, ["fold", "esmfold_v1", str(fasta), "-o", str(outdir), "--weights",
                                 str(tmp_path / "nowhere"), "--msa", str(msa)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "--msa" in message and "'esmfold_v1' folds from the sequence alone and takes no MSA" in message
    assert not outdir.exists()


def test_fold_names_its_attention_chunk_apart_from_the_job_chunk(fasta, esmfold_dir, tmp_path):
    result = runner.invoke(app, ["fold", "esmfold_v1", str(fasta), "-o", str(tmp_path / "o"), "--weights",
                                 str(esmfold_dir), "--chunk-size", "4"])
    assert result.exit_code == 2 and "No such option: --chunk-size" in result.stderr
    assert "--attention-chunk-size" in result.stderr


def test_which_folders_take_an_msa_is_read_from_their_fold_signature():
    from bionemo_lite.capabilities import model_class, takes_option

    takes = {}
    for spec in bionemo_lite.list_models(verb="fold"):
        cls = model_class(spec)  # without any weights
        assert cls is not None and callable(cls.fold), spec.name
        takes[spec.family] = takes_option(cls.fold, "msa")
    assert takes == {"esmfold": False, "openfold": True}

    def with_alignments(sequence, *, alignments=None): ...

    def anything(sequence, **options): ...

    assert takes_option(with_alignments, "msa") and not takes_option(anything, "msa")
