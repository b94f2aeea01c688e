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
    want = [(r.id, r.seed, k, g, r.properties) for r in expected.records for k, g in enumerate(r.generated)]
    assert len({r["id"] for r in rows}) >= 2 and set(rows[0]) >= {"qed", "logp"}
    assert [(r["id"], r["seed"], r["sample"], r["generated"]) for r in rows] == [w[:4] for w in want]
    for row, (_, _, k, _, props) in zip(rows, want):
        assert {name: row[name] for name in props} == {name: values[k] for name, values in props.items()}
    unknown = runner.invoke(app, ["generate", MODEL, str(smi), "-o", str(out), "--weights", str(nemo), "-q",
                                  "--option", "colour=blue"])
    assert unknown.exit_code == 1 and "does not accept the option 'colour'" in unknown.stderr
