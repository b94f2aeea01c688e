"""Batch commands end to end with the tiny random-weight ESM-2 checkpoint.

Every output is compared with what the Python API returns for the same
records on the same weights.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import bionemo_lite
from bionemo_lite.cli import app
from bionemo_lite.io import InputFile, read_embeddings
from bionemo_lite.jobs import EmbedTask, run_job

MODEL = "esm2_t6_8M_UR50D"
BIN = Path(sys.executable).parent / "bionemo-lite"
runner = CliRunner()
# The fixture checkpoint is a tiny model stored under a real variant's name, on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:.*is not the published esm2_t6_8M_UR50D")
GOOD = {
    "p1": "MKTAYIAKQRQISFVKSHFSRQ",
    "p2": "mktayiakqr",  # lower case is cleaned
    "p3": "GSHMLEDPVAGMKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ",
    "p4": "MAVL",
}
BAD = {"bad": "MKT1AYIAK"}  # a digit at position 4


def _fasta(path: Path, records: dict[str, str]) -> Path:
    path.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in records.items()))
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def model(esm2_fair_checkpoint):
    return bionemo_lite.load(MODEL, weights=esm2_fair_checkpoint)


@pytest.fixture
def fasta(tmp_path) -> Path:
    return _fasta(tmp_path / "in.fasta", {**dict(list(GOOD.items())[:2]), **BAD, **dict(list(GOOD.items())[2:])})


def _invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.mark.parametrize(
    "suffix, pooling, layers",
    [(".parquet", "mean", [-1]), (".h5", "per_residue", [-1]), (".npz", "bos", [0, -1]),
     (".parquet", "per_residue", [1, -1]), (".h5", "mean", [2])],
)
def test_embed_matches_the_python_api(model, esm2_fair_checkpoint, fasta, tmp_path, suffix, pooling, layers):
    out = tmp_path / f"emb{suffix}"
    args = ["embed", MODEL, fasta, "-o", out, "--weights", esm2_fair_checkpoint, "--pooling", pooling, "--quiet"]
    for layer in layers:
        args += ["--layer", str(layer)]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert f"wrote 4 records to {out}; 1 failed" in result.stderr

    expected = model.embed(GOOD, layer=layers, pooling=pooling)
    back = read_embeddings(out)
    assert back.ids == list(GOOD)  # N-1 records, input order
    for i, rid in enumerate(GOOD):
        want = [np.asarray(expected.by_layer[lay][i]) for lay in expected.layers]
        want_arr = want[0] if len(want) == 1 else np.stack(want)
        assert back.arrays[rid].shape == want_arr.shape
        assert np.max(np.abs(back.arrays[rid] - want_arr)) <= 1e-6
    if suffix != ".npz":
        assert back.layers == expected.layers and back.pooling == pooling and back.model == MODEL
        assert back.lengths == {rid: len(seq) for rid, seq in GOOD.items()}
    errors = _rows(Path(f"{out}.errors.csv"))
    assert len(errors) == 1 and errors[0]["id"] == "bad"
    assert errors[0]["reason"].startswith("position 4: invalid residue '1'")


def test_embed_parquet_columns(esm2_fair_checkpoint, fasta, tmp_path):
    out = tmp_path / "emb.parquet"
    assert _invoke("embed", MODEL, fasta, "-o", out, "--weights", esm2_fair_checkpoint, "-q").exit_code == 0
    table = pq.read_table(out)
    assert table.column_names == ["id", "sequence", "length", "truncated", "embedding"]
    assert table.column("sequence").to_pylist()[1] == "MKTAYIAKQR"
    assert {len(v) for v in table.column("embedding").to_pylist()} == {48}


def test_truncate_and_tokens_per_batch(model, esm2_fair_checkpoint, tmp_path):
    long = "MKTAYIAKQR" * 103 + "MKT"  # 1033 residues > 1022
    fasta = _fasta(tmp_path / "long.fasta", {"long": long, "short": "MKV"})
    refused = _invoke("embed", MODEL, fasta, "-o", tmp_path / "a.parquet", "--weights", esm2_fair_checkpoint, "-q")
    assert refused.exit_code == 0
    assert "1033 residues, more than the model's maximum of 1022" in (tmp_path / "a.parquet.errors.csv").read_text()

    out = tmp_path / "b.parquet"
    result = _invoke("embed", MODEL, fasta, "-o", out, "--weights", esm2_fair_checkpoint, "--truncate",
                     "--tokens-per-batch", "600", "--chunk-size", "1", "-q")
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pylist()
    assert [(r["id"], r["length"], r["truncated"]) for r in rows] == [("long", 1022, True), ("short", 3, False)]
    expected = model.embed({"long": long}, on_too_long="truncate").embeddings[0]
    assert np.max(np.abs(np.asarray(rows[0]["embedding"], np.float32) - expected)) <= 1e-6


def test_every_record_failing_exits_1(esm2_fair_checkpoint, tmp_path):
    fasta = _fasta(tmp_path / "bad.fasta", {"x": "MK*", "y": "ZZ-"})
    result = _invoke("embed", MODEL, fasta, "-o", tmp_path / "o.npz", "--weights", esm2_fair_checkpoint, "-q")
    assert result.exit_code == 1 and "every record failed" in result.stderr
    assert [r["id"] for r in _rows(tmp_path / "o.npz.errors.csv")] == ["x", "y"]


def test_score_pll(model, esm2_fair_checkpoint, fasta, tmp_path):
    out = tmp_path / "pll.csv"
    result = _invoke("score", MODEL, fasta, "-o", out, "--weights", esm2_fair_checkpoint, "--method", "pll", "-q")
    assert result.exit_code == 0, result.output
    expected = model.score(GOOD, method="pll")
    rows = _rows(out)
    assert [r["id"] for r in rows] == expected.ids == list(GOOD)
    assert [r["sequence"] for r in rows] == [s.upper() for s in GOOD.values()]
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected.scores, rtol=0, atol=1e-6)
    assert [r["id"] for r in _rows(Path(f"{out}.errors.csv"))] == ["bad"]


@pytest.mark.parametrize("method", ["masked_marginals", "wt_marginals"])
def test_score_mutations(model, esm2_fair_checkpoint, tmp_path, method):
    wild_type = GOOD["p1"]
    (tmp_path / "wt.fasta").write_text(f">wt\n{wild_type}\n")
    mutations = tmp_path / "muts.csv"
    mutations.write_text("mutation,note\nK2A,x\nt3s:a4g,y\nQ2R,wrong wild type\nY5W,z\nk2a,again\n")
    out = tmp_path / "effects.parquet"
    result = _invoke("score", MODEL, tmp_path / "wt.fasta", "-o", out, "--weights", esm2_fair_checkpoint,
                     "--method", method, "--mutations", mutations, "-q")
    assert result.exit_code == 0, result.output
    good = ["K2A", "T3S:A4G", "Y5W"]
    expected = model.score({"wt": wild_type}, method=method, mutations=good)
    rows = pq.read_table(out).to_pylist()
    mutants = ["MATAYIAKQRQISFVKSHFSRQ", "MKSGYIAKQRQISFVKSHFSRQ", "MKTAWIAKQRQISFVKSHFSRQ"]
    assert [(r["id"], r["mutation"], r["sequence"], r["wild_type"], r["truncated"]) for r in rows] == [
        ("wt", m, mt, wild_type, False) for m, mt in zip(good, mutants)]
    assert [r["note"] for r in rows] == ["x", "y", "z"]  # the mutations file's other columns pass through
    np.testing.assert_allclose([r["score"] for r in rows], expected.scores, rtol=0, atol=1e-6)
    errors = _rows(Path(f"{out}.errors.csv"))
    assert [e["id"] for e in errors] == ["Q2R", "K2A"]
    with pytest.raises(bionemo_lite.InvalidInputError) as err:  # the Python API's message, word for word
        model.score({"wt": wild_type}, method=method, mutations=["Q2R"])
    assert errors[0]["reason"] == f"position 2: {err.value.reason}"
    assert errors[1]["reason"] == "duplicate mutation (same as 'K2A', listed before); skipped"


def test_score_mutations_with_truncate(model, esm2_fair_checkpoint, tmp_path):
    wild_type = "MKTAYIAKQR" * 103  # 1030 residues > 1022
    (tmp_path / "wt.fasta").write_text(f">wt\n{wild_type}\n")
    mutations = tmp_path / "muts.txt"
    mutations.write_text("K2A\nR1020A\nA1024G\n")  # A1024G lies past the cut
    refused = _invoke("score", MODEL, tmp_path / "wt.fasta", "-o", tmp_path / "x.parquet", "--weights",
                      esm2_fair_checkpoint, "--mutations", mutations, "-q")
    assert refused.exit_code == 1 and "1030 residues" in refused.stderr
    out = tmp_path / "cut.parquet"
    result = _invoke("score", MODEL, tmp_path / "wt.fasta", "-o", out, "--weights", esm2_fair_checkpoint,
                     "--mutations", mutations, "--truncate", "-q")
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pylist()
    expected = model.score({"wt": wild_type[:1022]}, method="masked_marginals", mutations=["K2A", "R1020A"])
    cut = wild_type[:1022]
    assert [(r["mutation"], r["sequence"], r["wild_type"], r["truncated"]) for r in rows] == [
        ("K2A", "MA" + cut[2:], cut, True), ("R1020A", cut[:1019] + "A" + cut[1020:], cut, True)]
    np.testing.assert_allclose([r["score"] for r in rows], expected.scores, rtol=0, atol=1e-6)
    errors = _rows(Path(f"{out}.errors.csv"))
    assert [e["id"] for e in errors] == ["A1024G"]
    assert "position 1024 is past the first 1022 residues, where the wild type was truncated" in errors[0]["reason"]


def test_score_mutations_default_method_and_one_wild_type_only(model, esm2_fair_checkpoint, fasta, tmp_path):
    muts = tmp_path / "m.txt"
    muts.write_text("K2A\n")
    two = _invoke("score", MODEL, fasta, "-o", tmp_path / "x.csv", "--weights", esm2_fair_checkpoint,
                  "--mutations", muts, "-q")
    assert two.exit_code == 1 and "exactly one (wild-type) sequence" in two.stderr
    (tmp_path / "wt.fasta").write_text(f">wt\n{GOOD['p1']}\n")
    one = _invoke("score", MODEL, tmp_path / "wt.fasta", "-o", tmp_path / "y.csv", "--weights",
                  esm2_fair_checkpoint, "--mutations", muts, "-q")
    assert one.exit_code == 0, one.output
    want = model.score({"wt": GOOD["p1"]}, method="masked_marginals", mutations=["K2A"]).scores[0]
    assert abs(float(_rows(tmp_path / "y.csv")[0]["score"]) - want) <= 1e-6


def test_generate(model, esm2_fair_checkpoint, tmp_path):
    seeds = {"s1": "MKT<mask><mask>AYIAK", "s2": "<mask>KTAYIAKQR"}
    fasta = tmp_path / "seeds.csv"
    fasta.write_text("id,sequence\n" + "".join(f"{k},{v}\n" for k, v in seeds.items()))
    out = tmp_path / "gen.csv"
    result = _invoke("generate", MODEL, fasta, "-o", out, "--weights", esm2_fair_checkpoint, "--num-samples", "3",
                     "--temperature", "0.8", "--top-k", "5", "--seed", "7", "-q")
    assert result.exit_code == 0, result.output
    expected = model.generate(seeds, num_samples=3, temperature=0.8, top_k=5, seed=7)
    rows = _rows(out)
    assert list(rows[0]) == ["id", "seed", "sample", "generated", "score"]
    want = [(r.id, r.seed, str(k), g) for r in expected.records for k, g in enumerate(r.generated)]
    assert [(r["id"], r["seed"], r["sample"], r["generated"]) for r in rows] == want
    np.testing.assert_allclose([float(r["score"]) for r in rows],
                               [s for r in expected.records for s in r.scores], rtol=0, atol=1e-6)


def test_unavailable_device_or_dtype_is_a_usage_error(esm2_fair_checkpoint, fasta, tmp_path):
    import torch

    base = ["embed", MODEL, fasta, "-o", tmp_path / "o.parquet", "--weights", esm2_fair_checkpoint, "-q"]
    for device in ("tpu", "cuda:x") + (() if torch.cuda.is_available() else ("cuda",)):
        result = _invoke(*base, "--device", device)
        assert result.exit_code == 2 and "--device" in result.stderr, (device, result.output)
    result = _invoke(*base, "--dtype", "float17")
    assert result.exit_code == 2 and "unknown dtype 'float17'" in " ".join(result.stderr.split())
    assert not (tmp_path / "o.parquet").exists()


def test_generate_rejects_a_bad_option_without_traceback(esm2_fair_checkpoint, fasta, tmp_path):
    result = _invoke("generate", MODEL, fasta, "-o", tmp_path / "g.csv", "--weights", esm2_fair_checkpoint,
                     "--option", "order=sideways", "-q")
    assert result.exit_code == 1 and "order must be one of" in result.stderr


def test_huggingface_directory_weights(model, esm2_hf_dir, fasta, tmp_path):
    out = tmp_path / "hf.npz"
    result = _invoke("embed", MODEL, fasta, "-o", out, "--weights", esm2_hf_dir, "-q")
    assert result.exit_code == 0, result.output
    expected = model.embed(GOOD).embeddings  # the same weights in the fair-esm file
    back = read_embeddings(out)
    assert np.max(np.abs(np.stack([back.arrays[rid] for rid in GOOD]) - expected)) <= 1e-5


def test_resume_computes_only_the_missing_records(esm2_fair_checkpoint, tmp_path):
    """Interrupted after the first chunk, the re-run embeds only the rest (counted on a real ESM2Model subclass)."""
    records = {f"r{i}": GOOD["p3"][: 5 + 3 * i] for i in range(9)}
    src = InputFile(_fasta(tmp_path / "in.fasta", records))
    out = tmp_path / "emb.h5"
    model = bionemo_lite.load(MODEL, weights=esm2_fair_checkpoint)
    embedded: list[str] = []

    class CountingESM2(type(model)):
        def embed(self, inputs, *args, **kwargs):
            result = super().embed(inputs, *args, **kwargs)
            embedded.extend(result.ids)
            return result

    model.__class__ = CountingESM2

    def interrupt(report):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(src, EmbedTask(model), out, chunk_size=4, progress=False, on_chunk_done=interrupt)
    assert embedded == ["r0", "r1", "r2", "r3"] and not out.exists()
    summary = run_job(src, EmbedTask(model), out, chunk_size=4, progress=False)
    assert embedded == [f"r{i}" for i in range(9)]  # r4..r8 computed once, r0..r3 not again
    assert (summary.n_ok, summary.n_skipped_resumed, summary.n_computed) == (9, 4, 5)
    back = read_embeddings(out)
    assert back.ids == list(records)
    reference = bionemo_lite.load(MODEL, weights=esm2_fair_checkpoint).embed(records).embeddings
    assert np.max(np.abs(np.stack([back.arrays[r] for r in records]) - reference)) <= 1e-6


@pytest.mark.slow
def test_killed_process_resumes(model, esm2_fair_checkpoint, tmp_path):
    """SIGKILL a real `bionemo-lite embed` mid-way; the same command then finishes the job."""
    rng = np.random.default_rng(0)
    letters = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    records = {f"q{i}": "".join(rng.choice(letters, size=int(rng.integers(20, 60)))) for i in range(300)}
    fasta = _fasta(tmp_path / "many.fasta", records)
    out = tmp_path / "emb.parquet"
    manifest = Path(f"{out}.job.sqlite")
    cmd = [str(BIN), "embed", MODEL, str(fasta), "-o", str(out), "--weights", str(esm2_fair_checkpoint),
           "--chunk-size", "6", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the test machine is shared: no thread oversubscription
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    done = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists():
            try:
                with sqlite3.connect(manifest, timeout=1) as db:
                    done = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            except sqlite3.OperationalError:  # created but not initialised yet
                done = 0
            if done >= 12:
                break
        time.sleep(0.01)
    assert proc.poll() is None, f"the job ended before it could be killed: {proc.communicate()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()

    finished = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert finished.returncode == 0, finished.stderr
    resumed = int(re.search(r"wrote 300 records to .* \((\d+) resumed\)", finished.stderr).group(1))
    assert 12 <= resumed < 300
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == list(records)  # each record once, in input order
    got = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    assert np.max(np.abs(got - model.embed(records).embeddings)) <= 1e-6
    assert not manifest.exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_starts_the_http_service(model, esm2_fair_checkpoint):
    """`bionemo-lite serve` builds the settings from its options and answers over real HTTP."""
    import httpx

    port = _free_port()
    proc = subprocess.Popen(
        [str(BIN), "serve", "--port", str(port), "--weights", f"{MODEL}={esm2_fair_checkpoint}",
         "--max-sequences", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                if httpx.get(f"{base}/v1/health/live", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the service did not come up"
            time.sleep(0.2)
        answer = httpx.post(f"{base}/v1/models/{MODEL}/embed", json={"sequences": ["MKTAYIAKQR"]}, timeout=60)
        assert answer.status_code == 200, answer.text
        got = np.asarray(answer.json()["embeddings"], dtype=np.float32)
        assert np.max(np.abs(got - model.embed(["MKTAYIAKQR"]).embeddings)) <= 1e-6
        too_many = httpx.post(f"{base}/v1/models/{MODEL}/embed", json={"sequences": ["MKV", "MKL", "MKW"]}, timeout=60)
        assert too_many.status_code == 422  # --max-sequences 2 reached the settings
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_numerics_choose_the_arithmetic_and_key_the_manifest(esm2_fair_checkpoint, fasta, tmp_path):
    from esm2_fixtures import load_quietly

    out = tmp_path / "emb.h5"
    args = ["embed", MODEL, fasta, "-o", out, "--weights", esm2_fair_checkpoint, "--pooling", "per_residue", "-q"]
    assert _invoke(*args, "--numerics", "reference").exit_code == 0
    reference = load_quietly(esm2_fair_checkpoint, numerics="reference").embed(GOOD, pooling="per_residue")
    back = read_embeddings(out)
    for i, rid in enumerate(GOOD):
        np.testing.assert_array_equal(back.arrays[rid], reference.embeddings[i])  # the same arithmetic, bit for bit
    # Another mode is another result: nothing is resumed from the reference run.
    fast = _invoke(*args, "--numerics", "fast")
    assert fast.exit_code == 0 and "resumed" not in fast.stderr
    again = _invoke(*args, "--numerics", "fast")
    assert f"({len(GOOD)} resumed)" in again.stderr
