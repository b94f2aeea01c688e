"""A pooling added to the registry reaches every door with no door code: Python, CLI, HTTP.

`max` was added as one `Pooling` in bionemo_lite/pooling.py plus its name in the
ESM-2 and ProtT5 specs; these tests use it through each front door.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import bionemo_lite
from bionemo_lite.cli import app as cli_app
from bionemo_lite.io.writers import read_embeddings
from bionemo_lite.server.app import create_app
from bionemo_lite.server.settings import Settings

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]
NAME = "esm2_t6_8M_UR50D"
SEQS = {"p1": "MKTAYIAKQRQISFVKSHFSRQ", "p2": "GSHMLE"}


@pytest.fixture(scope="module")
def model(esm2_fair_checkpoint):
    return bionemo_lite.load(NAME, weights=esm2_fair_checkpoint)


@pytest.fixture(scope="module")
def expected(model):
    """Max over each record's per-residue rows (BOS, EOS and padding excluded)."""
    rows = model.embed(SEQS, pooling="per_residue").embeddings
    return np.stack([r.max(0) for r in rows])


def test_python(model, expected):
    result = model.embed(SEQS, pooling="max")
    assert result.embeddings.shape == expected.shape
    np.testing.assert_allclose(result.embeddings, expected, atol=1e-5, rtol=0)


def test_cli(tmp_path, esm2_fair_checkpoint, expected):
    fasta = tmp_path / "in.fasta"
    fasta.write_text("".join(f">{k}\n{v}\n" for k, v in SEQS.items()))
    out = tmp_path / "max.parquet"
    result = CliRunner().invoke(cli_app, ["embed", NAME, str(fasta), "-o", str(out), "--pooling", "max",
                                          "--weights", str(esm2_fair_checkpoint), "-q"])
    assert result.exit_code == 0, result.output
    read = read_embeddings(out)
    assert list(read.ids) == list(SEQS)
    np.testing.assert_allclose(np.stack([read.arrays[k] for k in SEQS]), expected, atol=1e-5, rtol=0)


def test_a_family_that_does_not_offer_it_refuses_it_before_loading(tmp_path):
    smi = tmp_path / "in.smi"
    smi.write_text("CCO ethanol\n")
    result = CliRunner().invoke(cli_app, ["embed", "megamolbart", str(smi), "-o", str(tmp_path / "o.parquet"),
                                          "--pooling", "max", "--weights", str(tmp_path / "absent.nemo")])
    assert result.exit_code == 2 and "pooling must be one of mean, per_token, per_residue" in result.output


def test_http(esm2_fair_checkpoint, expected):
    settings = Settings(weights={NAME: str(esm2_fair_checkpoint)}, default_model="off", workers=1)
    with TestClient(create_app(settings)) as client:
        r = client.post(f"/v1/models/{NAME}/embed", json={"sequences": list(SEQS.values()), "pooling": "max"})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(np.asarray(r.json()["embeddings"]), expected, atol=1e-5, rtol=0)
