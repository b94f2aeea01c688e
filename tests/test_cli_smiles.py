"""Batch commands on SMILES (`.smi` and CSV inputs) with a random-weight MegaMolBART `.nemo` checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import bionemo_lite
from bionemo_lite.cli import app
from bionemo_lite.io import read_embeddings
from megamolbart_fixtures import NemoLayout, random_nemo_state, write_nemo_archive

MODEL = "megamolbart"
runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
GOOD = {"ethanol": "CCO", "aspirin": "CC(=O)Oc1ccccc1C(=O)O", "4": "c1ccccc1"}


@pytest.fixture(scope="module")
def nemo(tmp_path_factory) -> Path:
    layout = NemoLayout(flat=True, seed=1)
    return write_nemo_archive(tmp_path_factory.mktemp("mmb") / "megamolbart.nemo", layout, random_nemo_state(layout))


@pytest.fixture(scope="module")
def model(nemo):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared machine
    yield bionemo_lite.load(MODEL, weights=nemo)
    torch.set_num_threads(threads)


@pytest.fixture
def smi(tmp_path) -> Path:
    path = tmp_path / "mols.smi"
    path.write_text("CCO ethanol\nCC(=O)Oc1ccccc1C(=O)O aspirin\nC1CC broken\nc1ccccc1\n")
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_embed_smiles_file(model, nemo, smi, tmp_path):
    out = tmp_path / "mols.h5"
    result = runner.invoke(app, ["embed", MODEL, str(smi), "-o", str(out), "--weights", str(nemo), "-q"])
    assert result.exit_code == 0, result.output
    back = read_embeddings(out)
    assert back.ids == list(GOOD)  # the unparsable SMILES is left out, the others keep their order
    expected = model.embed(GOOD)
    assert np.max(np.abs(np.stack([back.arrays[k] for k in GOOD]) - expected.embeddings)) <= 1e-6
    [error] = _rows(Path(f"{out}.errors.csv"))
    assert error["id"] == "broken" and "'C1CC' cannot be parsed" in error["reason"]


def test_score_uses_the_models_default_method(model, nemo, tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text("smiles,logS\n" + "".join(f"{s},0\n" for s in GOOD.values()) + "C1CC,0\n")
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", MODEL, str(path), "-o", str(out), "--weights", str(nemo), "-q"])
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    assert [r["id"] for r in rows] == ["1", "2", "3"]  # no id column: data row numbers
    expected = model.score(list(GOOD.values()))
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected.scores, rtol=0, atol=1e-5)
    assert [e["id"] for e in _rows(Path(f"{out}.errors.csv"))] == ["4"]
    truncate = runner.invoke(app, ["score", MODEL, str(path), "-o", str(out), "--weights", str(nemo), "-q",
                                   "--truncate"])
    assert truncate.exit_code == 1 and "does not accept the option 'on_too_long'" in truncate.stderr


def test_generate_maps_num_samples_to_the_family_option(model, nemo, smi, tmp_path):
    out = tmp_path / "gen.parquet"
    result = runner.invoke(app, ["generate", MODEL, str(smi), "-o", str(out), "--weights", str(nemo), "-q",
                                 "--num-samples", "4", "--seed", "3", "--option", "scaled_radius=0.5"])
    assert result.exit_code == 0, result.output
    import pyarrow.parquet as pq

    rows = pq.read_table(out).to_pylist()
    expected = model.generate(GOOD, num_molecules=4, seed=3, scaled_radius=0.5)
    # A seed whose samples were all invalid keeps one empty row instead of vanishing.
    want = [(r.id, r.seed, k, g, r.properties) for r in expected.records
            for k, g in (enumerate(r.generated) if r.generated else [(None, None)])]
    assert len({r["id"] for r in rows}) == 3 and set(rows[0]) >= {"qed", "logp"}
    assert [(r["id"], r["seed"], r["sample"], r["generated"]) for r in rows] == [w[:4] for w in want]
    for row, (_, _, k, _, props) in zip(rows, want):
        if k is not None:
            assert {name: row[name] for name in props} == {name: values[k] for name, values in props.items()}
    unknown = runner.invoke(app, ["generate", MODEL, str(smi), "-o", str(out), "--weights", str(nemo), "-q",
                                  "--option", "colour=blue"])
    assert unknown.exit_code == 1 and "does not accept the option 'colour'" in unknown.stderr


# BBBP's layout (num,name,p_np,smiles) with the kinds of rows that break naive pipelines there:
# RDKit-unreadable valences, a salt with a token the model lacks, an unclosed ring, a repeated name.
BBBP = [
    ("1", "Propanolol", "1", "[Cl].CC(C)NCC(O)COc1cccc2ccccc12"),
    ("2", "Terbutylchlorambucil", "1", "C(=O)(OC(C)(C)C)CCCc1ccc(cc1)N(CCCl)CCCl"),
    ("3", "40730", "1", "c12c3c(N4CCN(C)CC4)c(F)cc1c(c(C(O)=O)cn2C(C)CO3)=O"),
    ("4", "compound 11", "1", "O=N([O-])C1=C(CN=C1NCCSCc2ncccc2)Cc3ccccc3"),
    ("5", "Propanolol", "1", "CC(C)NCC(O)COc1cccc2ccccc12"),
    ("6", "cimetidine analogue", "1", "c1(nc(NC(N)=[NH2])sc1)CSCCNC(=[NH]C#N)N"),
    ("7", "unclosed", "0", "C1CC"),
    ("8", "aspirin", "1", "CC(=O)Oc1ccccc1C(=O)O"),
]


def test_bbbp_style_csv_reports_bad_rows_and_goes_on(model, nemo, tmp_path):
    path = tmp_path / "BBBP.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["num", "name", "p_np", "smiles"])
        writer.writerows(BBBP)
    out = tmp_path / "bbbp.parquet"
    result = runner.invoke(app, ["embed", MODEL, str(path), "-o", str(out), "--weights", str(nemo), "-q",
                                 "--chunk-size", "4"])
    assert result.exit_code == 0, result.output
    good = {name: smiles for _, name, _, smiles in BBBP if name in ("Terbutylchlorambucil", "40730", "aspirin")}
    back = read_embeddings(out)
    assert back.ids == list(good)  # the "name" column is the id, file order is kept
    import pyarrow.parquet as pq

    labels = pq.read_table(out, columns=["id", "num", "p_np"]).to_pylist()
    assert labels == [{"id": name, "num": num, "p_np": p_np} for num, name, p_np, _ in BBBP if name in good]
    expected = model.embed(good)
    assert np.max(np.abs(np.stack([back.arrays[k] for k in good]) - expected.embeddings)) <= 1e-6
    errors = _rows(Path(f"{out}.errors.csv"))
    assert [e["id"] for e in errors] == ["Propanolol", "compound 11", "Propanolol", "cimetidine analogue", "unclosed"]
    reasons = [e["reason"] for e in errors]
    assert "not in the model's vocabulary" in reasons[0]
    assert "Explicit valence" in reasons[1] and "Explicit valence" in reasons[3]
    assert "duplicate id" in reasons[2] and "'C1CC' cannot be parsed" in reasons[4]


def test_generate_with_no_valid_molecule_is_not_a_failure(nemo, tmp_path):
    # The random-weight model decodes these two seeds (seed 0, one round of 3 samples each) into invalid SMILES only.
    path = tmp_path / "seeds.smi"
    path.write_text("CCO ethanol\nc1ccccc1 benzene\n")
    out = tmp_path / "gen.csv"
    result = runner.invoke(app, ["generate", MODEL, str(path), "-o", str(out), "--weights", str(nemo), "-q",
                                 "--num-samples", "3", "--seed", "0", "--option", "max_rounds=1"])
    assert result.exit_code == 0, result.output
    assert f"wrote 2 records to {out}" in result.stderr
    rows = _rows(out)
    assert [(r["id"], r["seed"], r["sample"], r["generated"]) for r in rows] == [
        ("ethanol", "CCO", "", ""), ("benzene", "c1ccccc1", "", "")]
    assert not Path(f"{out}.errors.csv").exists()  # nothing failed: no errors file


def test_per_token_embeddings_keep_their_rows_in_every_format(model, nemo, smi, tmp_path):
    arrays = {}
    for suffix in (".parquet", ".h5", ".npz"):
        out = tmp_path / f"tokens{suffix}"
        result = runner.invoke(app, ["embed", MODEL, str(smi), "-o", str(out), "--weights", str(nemo), "-q",
                                     "--pooling", "per_token"])
        assert result.exit_code == 0, result.output
        arrays[suffix] = read_embeddings(out).arrays
    expected = model.embed(GOOD, pooling="per_token")
    for i, rid in enumerate(GOOD):
        want = expected.by_layer[expected.layers[0]][i]
        assert want.ndim == 2 and want.shape[1] == expected.dim
        for suffix, got in arrays.items():
            assert got[rid].shape == want.shape, suffix  # (L, D), not flattened
            np.testing.assert_allclose(got[rid], want, rtol=0, atol=1e-6)
