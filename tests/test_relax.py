"""AMBER relaxation of folds (`bionemo_lite.relax`): a tiny random-weight ESMFold's structure, whose
residues overlap by construction, relaxed through Python (the family keyword and `FoldOptions`), the
CLI and HTTP (a real uvicorn server); the clash rule on hand-built atoms; the missing-extra error."""

from __future__ import annotations

import csv
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import bionemo_lite
from bionemo_lite.cli import app
from bionemo_lite.errors import InvalidInputError, RelaxError, RelaxUnavailableError
from bionemo_lite.relax import count_clashes, relax_structure
from bionemo_lite.structures import Atom, read_atoms, to_pdb
from bionemo_lite.verbs import FoldOptions
from bionemo_lite.zoo.esmfold.testing import write_tiny_esmfold_dir
from server_fixtures import running_server, uvicorn_factory

pytest.importorskip("openmm", reason="the [relax] extra (make install installs it)")
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*is not the published esmfold_v1"),
    pytest.mark.usefixtures("one_torch_thread"),
]

NAME = "esmfold_v1"
SEQ = "MKTAYIAKQR"
COMPLEX = "MKTAYIAK:GSHWLE"
runner = CliRunner()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_tiny_esmfold_dir(tmp_path_factory.mktemp("esmfold") / "esmfold_tiny")


@pytest.fixture(scope="module")
def folder(weights):
    return bionemo_lite.load(NAME, weights=weights)


@pytest.fixture(scope="module")
def relaxed_complex(folder):
    return FoldOptions(relax=True).run(folder, COMPLEX)


def _residues(atoms: list[Atom]) -> list[tuple[str, int, str]]:
    return list(dict.fromkeys((a.chain, a.residue_number, a.residue_name) for a in atoms))


def _heavy(atoms: list[Atom]) -> dict[tuple[str, int, str], np.ndarray]:
    return {(a.chain, a.residue_number, a.name): np.array(a.coord) for a in atoms if a.element != "H"}


def test_relax_lowers_energy_and_clashes(relaxed_complex):
    r = relaxed_complex.relaxed
    assert r is not None and r.platform == "CPU"
    assert r.clashes_before > 0, "the random-weight fold should overlap residues"
    assert r.clashes_after < r.clashes_before
    assert np.isfinite(r.energy_after) and r.energy_after < r.energy_before
    assert 0.0 < r.rmsd < 8.0  # restrained: atoms move, but not far (a few A out of a random fold's overlaps)
    assert r.iterations >= 1 and r.seconds > 0


def test_relaxed_keeps_sequence_chains_and_numbering(relaxed_complex):
    raw = read_atoms(relaxed_complex.pdb, "pdb")
    for text, fmt in ((relaxed_complex.relaxed.pdb, "pdb"), (relaxed_complex.relaxed.mmcif, "mmcif")):
        relaxed = read_atoms(text, fmt)
        assert _residues(relaxed) == _residues(raw)
        assert {a.chain for a in relaxed} == {"A", "B"}
        assert any(a.element == "H" for a in relaxed)  # hydrogens added before minimising
        assert set(_heavy(raw)) <= set(_heavy(relaxed))  # every raw heavy atom is still there
        # pLDDT stays in the B-factors, residue by residue.
        raw_b = {(a.chain, a.residue_number): a.b_factor for a in raw}
        assert all(a.b_factor == pytest.approx(raw_b[(a.chain, a.residue_number)], abs=0.01) for a in relaxed)
    # The raw prediction is kept as it was.
    assert relaxed_complex.pdb != relaxed_complex.relaxed.pdb


def test_rmsd_is_what_the_heavy_atoms_moved(relaxed_complex):
    raw = _heavy(read_atoms(relaxed_complex.pdb, "pdb"))
    relaxed = _heavy(read_atoms(relaxed_complex.relaxed.pdb, "pdb"))
    moved = np.array([np.sum((raw[k] - relaxed[k]) ** 2) for k in raw])
    assert np.sqrt(moved.mean()) == pytest.approx(relaxed_complex.relaxed.rmsd, abs=2e-3)  # PDB's 3 decimals


def test_clash_count_of_the_raw_structure_is_recomputed(relaxed_complex):
    assert count_clashes(read_atoms(relaxed_complex.pdb, "pdb"))[0] == relaxed_complex.relaxed.clashes_before


@pytest.mark.slow  # a second relaxation
def test_family_keyword_gives_the_same_result(folder, relaxed_complex):
    direct = folder.fold(COMPLEX, relax=True)
    assert direct.pdb == relaxed_complex.pdb
    # Reproducible to the last digit: deterministic forces, one thread, PDBFixer's placements seeded.
    assert direct.relaxed.pdb == relaxed_complex.relaxed.pdb
    assert direct.relaxed.energy_after == relaxed_complex.relaxed.energy_after


def test_to_dict_carries_the_relaxed_structure(relaxed_complex):
    body = json.loads(json.dumps(relaxed_complex.to_dict()))
    relaxed = body["relaxed"]
    assert relaxed["pdb"] == relaxed_complex.relaxed.pdb and relaxed["mmcif"] == relaxed_complex.relaxed.mmcif
    assert relaxed["energy_after"] < relaxed["energy_before"] and relaxed["clashes_before"] > 0
    assert replace(relaxed_complex, relaxed=None).to_dict()["relaxed"] is None


def test_unknown_residues_are_a_named_record_error(folder):
    structure = folder.fold("MKTXAYIAK", record_id="with-x")
    with pytest.raises(RelaxError, match="UNK 4 of chain A") as info:
        relax_structure(structure)
    assert isinstance(info.value, InvalidInputError) and info.value.record == "with-x"


def test_ligands_are_a_named_record_error(relaxed_complex):
    atoms = read_atoms(relaxed_complex.pdb)
    ligand = Atom("C", 1, "LIG", "C1", "C", (0.0, 0.0, 0.0), hetero=True)
    with_ligand = replace(relaxed_complex, id="holo", pdb=to_pdb([*atoms, ligand]), relaxed=None)
    with pytest.raises(RelaxError, match="LIG 1 of chain C.*no ligands") as info:
        relax_structure(with_ligand)
    assert info.value.record == "holo"


@pytest.mark.slow  # importing openfold3 and folding take ~20 s
def test_openfold_relaxes_alike(tmp_path_factory):
    pytest.importorskip("openfold3")
    from bionemo_lite.zoo.openfold.testing import write_tiny_checkpoint

    path = write_tiny_checkpoint(tmp_path_factory.mktemp("of3") / "of3-tiny.ckpt", "training", seed=0)
    model = bionemo_lite.load("openbind-2025-06-30-174k", weights=path, max_tokens=80)
    direct = model.fold("MKTAYIAKQR:GSHWLE", id="of", relax=True)
    r = direct.relaxed
    # The tiny random diffusion scatters atoms hundreds of A apart (no clashes, bonds torn): relaxing
    # pulls the bonds back together, so only the energy and the bookkeeping are checked here.
    assert r.energy_after < r.energy_before and r.rmsd > 0 and r.clashes_after == 0
    assert _residues(read_atoms(r.mmcif, "mmcif")) == _residues(read_atoms(direct.mmcif, "mmcif"))
    through_options = FoldOptions(extra={"id": "of"}, relax=True).run(model, "MKTAYIAKQR:GSHWLE")
    assert through_options.relaxed.mmcif == r.mmcif


def _atom(chain: str, number: int, name: str, x: float, element: str | None = None) -> Atom:
    return Atom(chain, number, "CYS", name, element or name[0], (x, 0.0, 0.0))


def test_clash_rule():
    # Two carbons of different residues 1.0 A apart: closer than 1.7 + 1.7 - 1.5 = 1.9 A.
    assert count_clashes([_atom("A", 1, "CB", 0.0), _atom("A", 3, "CB", 1.0)]) == (1, {("A", 1), ("A", 3)})
    assert count_clashes([_atom("A", 1, "CB", 0.0), _atom("A", 3, "CB", 2.0)])[0] == 0  # beyond 1.9 A
    assert count_clashes([_atom("A", 1, "CB", 0.0), _atom("A", 1, "CA", 1.0)])[0] == 0  # same residue
    assert count_clashes([_atom("A", 1, "C", 0.0), _atom("A", 2, "N", 1.3)])[0] == 0  # peptide bond
    assert count_clashes([_atom("A", 2, "C", 0.0), _atom("A", 1, "N", 1.3)])[0] == 1  # not a peptide bond
    assert count_clashes([_atom("A", 1, "C", 0.0), _atom("B", 2, "N", 1.3)])[0] == 1  # other chain
    assert count_clashes([_atom("A", 1, "SG", 0.0, "S"), _atom("A", 9, "SG", 1.5, "S")])[0] == 0  # disulfide
    assert count_clashes([_atom("A", 1, "CB", 0.0), _atom("A", 3, "H", 0.5, "H")])[0] == 0  # hydrogens ignored


def _without_openmm(monkeypatch):
    for name in ("openmm", "openmm.unit", "openmm.app", "pdbfixer"):
        monkeypatch.setitem(sys.modules, name, None)  # as if the [relax] extra were not installed


def test_missing_extra_is_a_clear_error(folder, monkeypatch):
    _without_openmm(monkeypatch)
    for call in (lambda: FoldOptions(relax=True).run(folder, SEQ), lambda: folder.fold(SEQ, relax=True)):
        with pytest.raises(RelaxUnavailableError, match=r"pip install 'bionemo-lite\[relax\]'"):
            call()
    assert folder.fold(SEQ).relaxed is None  # folding without relax needs no extra


def test_cli_missing_extra(weights, tmp_path, monkeypatch):
    _without_openmm(monkeypatch)
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">p1\n{SEQ}\n")
    result = runner.invoke(app, ["fold", NAME, str(fasta), "-o", str(tmp_path / "out"), "--weights", str(weights),
                                 "--relax", "-q"])
    assert result.exit_code == 1 and "pip install 'bionemo-lite[relax]'" in result.output
    assert not (tmp_path / "out" / "p1.pdb").exists()


@pytest.mark.slow  # two folds relaxed
def test_cli_writes_relaxed_structures_and_figures(weights, tmp_path):
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">p1\n{SEQ}\n>unknown\nMKTXAY\n>dimer\n{COMPLEX}\n")
    out = tmp_path / "structures"
    result = runner.invoke(app, ["fold", NAME, str(fasta), "-o", str(out), "--weights", str(weights), "--relax", "-q"])
    assert result.exit_code == 0, result.output
    with open(out / "summary.csv", newline="") as fh:
        rows = {row["id"]: row for row in csv.DictReader(fh)}
    assert set(rows) == {"p1", "dimer"}
    for rid, row in rows.items():
        assert Path(row["relaxed_path"]) == out / f"{rid}.relaxed.pdb" and Path(row["path"]) == out / f"{rid}.pdb"
        raw, relaxed = read_atoms(Path(row["path"]).read_text()), read_atoms(Path(row["relaxed_path"]).read_text())
        assert _residues(relaxed) == _residues(raw)
        assert float(row["energy_after"]) < float(row["energy_before"])
        assert int(row["clashes_after"]) < int(row["clashes_before"])
        assert 0 < float(row["rmsd"]) < 8 and float(row["relax_seconds"]) > 0
    with open(out / "errors.csv", newline="") as fh:
        errors = {row["id"]: row for row in csv.DictReader(fh)}
    assert "UNK" in errors["unknown"]["reason"] and not (out / "unknown.pdb").exists()


@pytest.fixture(scope="module")
def server(tmp_path_factory, weights):
    tmp = tmp_path_factory.mktemp("relaxserver")
    env = {"BIONEMO_LITE_HOME": str(tmp / "empty-cache"), "BIONEMO_LITE_TORCH_THREADS": "1",
           "BIONEMO_LITE_WEIGHTS": json.dumps({NAME: str(weights)})}
    with running_server(uvicorn_factory("bionemo_lite.server.app:create_app"), env, tmp) as srv:
        yield srv


@pytest.mark.slow  # a server process importing transformers
def test_http_relax(client, relaxed_complex):
    r = client.post(f"/v1/models/{NAME}/fold", json={"sequence": COMPLEX, "relax": True})
    assert r.status_code == 200, r.text
    body = r.json()
    relaxed = body["relaxed"]
    assert body["pdb"] == relaxed_complex.pdb  # the raw prediction, as in Python
    assert relaxed["mmcif"] is None and _residues(read_atoms(relaxed["pdb"])) == _residues(read_atoms(body["pdb"]))
    assert relaxed["energy_after"] < relaxed["energy_before"] and relaxed["clashes_after"] < relaxed["clashes_before"]
    assert relaxed["pdb"] == relaxed_complex.relaxed.pdb  # the same relaxation as in Python
    assert relaxed["clashes_before"] == relaxed_complex.relaxed.clashes_before
    assert 0 < relaxed["rmsd"] < 8
    assert client.post(f"/v1/models/{NAME}/fold", json={"sequence": COMPLEX}).json()["relaxed"] is None
    # The bare file of a relaxed fold is the relaxed structure.
    r = client.post(f"/v1/models/{NAME}/fold", json={"sequence": COMPLEX, "relax": True, "format": "mmcif"},
                    headers={"accept": "chemical/x-mmcif"})
    assert r.status_code == 200 and any(a.element == "H" for a in read_atoms(r.text, "mmcif"))


@pytest.mark.slow
def test_http_relax_errors(client):
    r = client.post(f"/v1/models/{NAME}/fold", json={"sequence": "MKTXAY", "id": "x", "relax": True})
    assert r.status_code == 422 and r.json()["record"] == "x" and "UNK" in r.json()["detail"]
    assert r.json()["request_id"]
    r = client.post(f"/v1/models/{NAME}/fold", json={"sequence": SEQ, "relax": "yes"})
    assert r.status_code == 422


@pytest.mark.slow  # a tritonserver
def test_triton_folds_remotely_and_relaxes_client_side(weights, relaxed_complex, tmp_path):
    pytest.importorskip("pytriton")
    from bionemo_lite.triton.export import export_model
    from bionemo_lite.triton.launch import TritonServer

    repo = tmp_path / "repository"
    export_model(NAME, repo, weights=weights, num_threads=1)
    server = TritonServer(repo, log_path=tmp_path / "triton.log", startup_timeout=240)
    server.start()
    try:
        fasta = tmp_path / "in.fasta"
        fasta.write_text(f">dimer\n{COMPLEX}\n")
        out = tmp_path / "served"
        result = runner.invoke(app, ["fold", NAME, str(fasta), "-o", str(out), "--backend", "triton",
                                     "--triton-url", server.http_url, "--relax", "-q"])
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    assert (out / "dimer.pdb").read_text() == relaxed_complex.pdb  # folded by the server
    assert (out / "dimer.relaxed.pdb").read_text() == relaxed_complex.relaxed.pdb  # relaxed here, alike


@pytest.mark.slow  # a second server process
def test_http_without_the_extra_is_501_with_the_install_hint(weights, tmp_path):
    # A server whose interpreter cannot import OpenMM / PDBFixer, as without the [relax] extra.
    blocker = tmp_path / "no-relax-extra"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules.update(openmm=None, pdbfixer=None)\n")
    env = {"BIONEMO_LITE_HOME": str(tmp_path / "empty-cache"), "BIONEMO_LITE_TORCH_THREADS": "1",
           "BIONEMO_LITE_WEIGHTS": json.dumps({NAME: str(weights)}),
           "PYTHONPATH": os.pathsep.join([str(blocker), str(Path(__file__).parent)])}
    import httpx

    with running_server(uvicorn_factory("bionemo_lite.server.app:create_app"), env, tmp_path) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=120) as http:
            r = http.post(f"/v1/models/{NAME}/fold", json={"sequence": SEQ, "relax": True})
            assert r.status_code == 501, r.text
            assert "pip install 'bionemo-lite[relax]'" in r.json()["detail"] and r.json()["request_id"]
            assert http.post(f"/v1/models/{NAME}/fold", json={"sequence": SEQ}).status_code == 200
