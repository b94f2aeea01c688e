"""``bionemo-lite embed prot_t5_xl_uniref50`` end to end with a tiny random T5 checkpoint
(Hugging Face layout, with the real sentencepiece vocabulary file), compared with the Python API.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

import bionemo_lite
from bionemo_lite.cli import app
from bionemo_lite.io import read_embeddings
from bionemo_lite.zoo.prott5.testing import train_spiece, write_full

transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

MODEL = "prot_t5_xl_uniref50"
runner = CliRunner()
pytestmark = pytest.mark.filterwarnings("ignore:.*is not the published.*:UserWarning")
GOOD = {
    "p1": "MKTAYIAKQRQISFVKSHFSRQ",
    "p2": "mktayiakqrUZOB",  # lower case is cleaned; U Z O B are read as X
    "p3": "M",
    "p4": "GSHMLEDPVAGMKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ",
}
BAD = {"bad": "MKT1AYIAK"}  # a digit at position 4


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A tiny full ``T5ForConditionalGeneration`` directory with a real ``spiece.model``."""
    root = tmp_path_factory.mktemp("prott5cli")
    return write_full(root / "prot_t5_xl_uniref50", seed=4, spiece=train_spiece(root / "spiece"))


@pytest.fixture(scope="module")
def model(weights):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared machine
    yield bionemo_lite.load(MODEL, weights=weights)
    torch.set_num_threads(threads)


@pytest.fixture
def fasta(tmp_path) -> Path:
    records = {**dict(list(GOOD.items())[:2]), **BAD, **dict(list(GOOD.items())[2:])}
    path = tmp_path / "in.fasta"
    path.write_text("".join(f">{rid} some description\n{seq}\n" for rid, seq in records.items()))
    return path


def _embed(fasta: Path, out: Path, weights: Path, *extra: str):
    result = runner.invoke(app, ["embed", MODEL, str(fasta), "-o", str(out), "--weights", str(weights), "-q", *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def _errors(out: Path) -> list[dict[str, str]]:
    with open(f"{out}.errors.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_embed_mean_to_parquet_equals_python(model, weights, fasta, tmp_path):
    out = tmp_path / "emb.parquet"
    result = _embed(fasta, out, weights)
    assert result.exit_code == 0, result.output  # a bad record fails alone
    back = read_embeddings(out)
    assert back.ids == list(GOOD) and back.model == MODEL and back.pooling == "mean" and back.layers == (2,)
    expected = model.embed(GOOD)
    got = np.stack([back.arrays[k] for k in GOOD])
    assert got.shape == (4, 32) and np.max(np.abs(got - expected.embeddings)) <= 1e-6
    table = pq.read_table(out).to_pylist()
    assert [r["sequence"] for r in table][1] == "MKTAYIAKQRUZOB" and [r["length"] for r in table] == [22, 14, 1, 44]
    [error] = _errors(out)
    assert error["id"] == "bad" and "position 4" in error["reason"] and "'1'" in error["reason"]


def test_embed_per_residue_to_h5_equals_python(model, weights, fasta, tmp_path):
    out = tmp_path / "emb.h5"
    result = _embed(fasta, out, weights, "--pooling", "per_residue", "--layer", "1", "--layer", "-1")
    assert result.exit_code == 0, result.output
    back = read_embeddings(out)
    assert back.ids == list(GOOD) and back.pooling == "per_residue" and back.layers == (1, 2)
    expected = model.embed(GOOD, pooling="per_residue", layer=[1, -1])
    for i, rid in enumerate(GOOD):
        array = back.arrays[rid]
        assert array.shape == (2, len(GOOD[rid]), 32)  # layers x residues (no </s>) x d_model
        for j, layer in enumerate((1, 2)):
            assert np.max(np.abs(array[j] - expected.by_layer[layer][i])) <= 1e-6


def test_bos_pooling_is_refused(weights, fasta, tmp_path):
    out = tmp_path / "emb.parquet"
    result = _embed(fasta, out, weights, "--pooling", "bos")
    plain = " ".join(result.stderr.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())  # no box drawing
    assert result.exit_code == 2 and "pooling must be one of mean, max, per_residue; got 'bos'" in plain
    assert not out.exists()
