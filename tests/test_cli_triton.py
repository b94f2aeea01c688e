"""Batch jobs against a real tritonserver: ``--backend triton`` runs the same job code on a `RemoteModel`.

One server per module (the nvidia-pytriton wheel's, on CPU) serving the tiny
ESM-2 checkpoint exported in the python format (embed, score, generate). Each
job's output file is compared with the same job run in-process.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from bionemo_lite.cli import app
from bionemo_lite.triton.export import export_model
from bionemo_lite.triton.launch import TritonServer
from bionemo_lite.triton.remote import RemoteModel
from bionemo_lite.verbs import Embedder, Generator, Scorer
from triton_fixtures import NAME, SEQUENCES

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

runner = CliRunner()
# Both sides run the plugin's own code on one torch thread: the python format adds no arithmetic.
PARITY = 0.0


@pytest.fixture(scope="module")
def triton(tmp_path_factory, esm2_fair_checkpoint):
    repo = tmp_path_factory.mktemp("triton") / "repo"
    export_model(NAME, repo, weights=esm2_fair_checkpoint, verbs=["embed", "score", "generate"], num_threads=1)
    server = TritonServer(repo, log_path=tmp_path_factory.mktemp("tlog") / "triton.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fasta(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("in") / "in.fasta"
    records = {**SEQUENCES, "bad": "MKJ"}
    path.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in records.items()))
    return path


def _run(*args: object) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def _both(verb: str, fasta: Path, out: Path, weights: Path, url: str, *options: object) -> tuple[Path, Path]:
    """OUT written in-process and OUT's triton twin written through the server."""
    local, served = out, out.with_name(f"triton_{out.name}")
    _run(verb, NAME, fasta, "-o", local, "--weights", weights, "-q", *options)
    _run(verb, NAME, fasta, "-o", served, "--backend", "triton", "--triton-url", url, "-q", *options)
    return local, served


def test_remote_model_implements_the_verb_protocols(triton):
    model = RemoteModel.connect(NAME, triton.http_url)
    assert isinstance(model, Embedder) and isinstance(model, Scorer) and isinstance(model, Generator)
    assert model.verbs == {"embed", "score", "generate"}
    model.close()


@pytest.mark.parametrize("suffix, pooling", [(".parquet", "mean"), (".parquet", "per_residue")])
def test_embed_job_through_triton_matches_inprocess(triton, fasta, esm2_fair_checkpoint, tmp_path, suffix, pooling):
    local, served = _both("embed", fasta, tmp_path / f"e{suffix}", esm2_fair_checkpoint, triton.http_url,
                          "--pooling", pooling, "--layer", "0", "--layer", "-1")
    a, b = pq.read_table(local).to_pylist(), pq.read_table(served).to_pylist()
    assert [r["id"] for r in a] == [r["id"] for r in b] == list(SEQUENCES)
    for x, y in zip(a, b):
        for column in x:
            if column.startswith("embedding"):
                assert np.abs(np.asarray(x[column], np.float32) - np.asarray(y[column], np.float32)).max() <= PARITY
            else:
                assert x[column] == y[column], column
    assert _errors(local) == _errors(served) and [row[0] for row in _errors(served)] == ["bad"]


def _errors(output: Path) -> list[tuple[str, ...]]:
    path = output.with_name(output.name + ".errors.csv")
    with path.open() as handle:
        return [tuple(row.values()) for row in csv.DictReader(handle)]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_score_job_through_triton_matches_inprocess(triton, fasta, esm2_fair_checkpoint, tmp_path):
    local, served = _both("score", fasta, tmp_path / "s.csv", esm2_fair_checkpoint, triton.http_url)
    assert _rows(local) == _rows(served) and len(_rows(local)) == len(SEQUENCES)
    assert _errors(local) == _errors(served)


def test_mutation_score_job_through_triton_matches_inprocess(triton, esm2_fair_checkpoint, tmp_path):
    wild_type = tmp_path / "wt.fasta"
    wild_type.write_text(f">wt\n{SEQUENCES['p1']}\n")
    mutations = tmp_path / "muts.txt"
    mutations.write_text("M1A\nK2G\nT3W:A4C\nQ99A\n")
    local, served = tmp_path / "m.csv", tmp_path / "triton_m.csv"
    for out, extra in ((local, ["--weights", esm2_fair_checkpoint]),
                       (served, ["--backend", "triton", "--triton-url", triton.http_url])):
        _run("score", NAME, wild_type, "-o", out, "--mutations", mutations, "-q", *extra)
    assert _rows(local) == _rows(served) and len(_rows(local)) == 3
    assert _errors(local) == _errors(served)


def test_generate_job_through_triton_matches_inprocess(triton, esm2_fair_checkpoint, tmp_path):
    seeds = tmp_path / "seeds.fasta"
    seeds.write_text(">s1\nMK<mask>AY<mask>\n>s2\n<mask>GSH\n")
    local, served = _both("generate", seeds, tmp_path / "g.csv", esm2_fair_checkpoint, triton.http_url,
                          "--num-samples", "3", "--seed", "7")
    assert _rows(local) == _rows(served) and len(_rows(local)) == 6


def test_triton_backend_refuses_local_options(triton, fasta, esm2_fair_checkpoint, tmp_path):
    result = runner.invoke(app, ["embed", NAME, str(fasta), "-o", str(tmp_path / "x.parquet"), "--backend", "triton",
                                 "--triton-url", triton.http_url, "--weights", str(esm2_fair_checkpoint)])
    assert result.exit_code == 2 and "--weights" in result.output
    result = runner.invoke(app, ["embed", NAME, str(fasta), "-o", str(tmp_path / "x.parquet"), "--backend", "triton"])
    assert result.exit_code == 2 and "--triton-url" in result.output
