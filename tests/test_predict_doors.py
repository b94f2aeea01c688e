"""A fine-tune is made from the CLI and over HTTP, then served by name through every door with equal predictions.

CLI: ``bionemo-lite finetune ... --name`` then ``bionemo-lite models`` / ``bionemo-lite predict`` (a
resumable job). HTTP: a real ``bionemo-lite serve`` process fine-tunes (``POST .../finetune``) and
predicts (``POST .../predict``). Triton: the fine-tune exported and served by a real tritonserver.
Every door's predictions equal the Python API's within 1e-5.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

import bionemo_lite
from bionemo_lite.cli import app as cli_app
from bionemo_lite.zoo.finetuned.testing import residue_fraction_rows, write_table
from server_fixtures import cli_serve, running_server

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]

BASE = "esm2_t6_8M_UR50D"
QUERY = residue_fraction_rows(6, seed=11)
TOLERANCE = 1e-5


def query_fasta(folder: Path) -> Path:
    path = folder / "query.fasta"
    path.write_text("".join(f">{rid}\n{seq}\n" for rid, seq, _ in QUERY))
    return path


@pytest.fixture(scope="module")
def finetune_home(tmp_path_factory):
    """One weight cache for the module: the fine-tunes registered by one test are found by the next."""
    home = tmp_path_factory.mktemp("home")
    patch = pytest.MonkeyPatch()
    patch.setenv("BIONEMO_LITE_HOME", str(home))
    yield home
    patch.undo()


@pytest.fixture(autouse=True)
def _isolated_cache(finetune_home, monkeypatch):
    """Replaces conftest's per-test empty cache with the module's."""
    monkeypatch.setenv("BIONEMO_LITE_HOME", str(finetune_home))


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return write_table(tmp_path_factory.mktemp("data") / "frac.csv", residue_fraction_rows(120), "frac_k")


@pytest.fixture(scope="module")
def cli_head(tmp_path_factory, finetune_home, table, esm2_fair_checkpoint) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("cli") / "head"
    result = CliRunner().invoke(cli_app, ["finetune", BASE, str(table), "--target", "frac_k", "-o", str(out),
                                          "--weights", str(esm2_fair_checkpoint), "--name", "cli_frac", "-q"])
    assert result.exit_code == 0, result.output
    return out, result.output


def python_values(folder_or_name: str) -> np.ndarray:
    return np.asarray(bionemo_lite.load(folder_or_name).predict({r: s for r, s, _ in QUERY}).values)


def read_predictions(path: Path) -> dict[str, float]:
    with open(path) as fh:
        return {row["id"]: float(row["prediction"]) for row in csv.DictReader(fh)}


def test_cli_finetune_reports_held_out_metrics(cli_head):
    out, output = cli_head
    assert "test: spearman" in output and "rmse" in output and "registered as cli_frac" in output
    assert (out / "card.json").is_file()
    listed = CliRunner().invoke(cli_app, ["models", "--verb", "predict"])
    assert listed.exit_code == 0 and "cli_frac" in listed.output and "finetuned" in listed.output


def test_cli_predict_by_name_equals_python_and_resumes(cli_head, tmp_path):
    out_csv = tmp_path / "pred.csv"
    args = ["predict", "cli_frac", str(query_fasta(tmp_path)), "-o", str(out_csv), "-q"]
    first = CliRunner().invoke(cli_app, args)
    assert first.exit_code == 0, first.output
    got = read_predictions(out_csv)
    expected = python_values("cli_frac")
    assert list(got) == [r for r, _, _ in QUERY]
    assert np.allclose(list(got.values()), expected, atol=TOLERANCE, rtol=0)
    again = CliRunner().invoke(cli_app, args)
    assert again.exit_code == 0 and "nothing to do" in again.output


def test_cli_predict_names_a_bad_record(cli_head, tmp_path):
    bad = tmp_path / "bad.fasta"
    bad.write_text(">good\nMKTAYIAKQR\n>broken\nMKT1AY\n")
    result = CliRunner().invoke(cli_app, ["predict", str(cli_head[0]), str(bad), "-o", str(tmp_path / "p.csv"), "-q"])
    assert result.exit_code == 0, result.output
    assert list(read_predictions(tmp_path / "p.csv")) == ["good"]
    errors = (tmp_path / "p.csv.errors.csv").read_text()
    assert "broken" in errors


@pytest.mark.slow  # LoRA through the CLI: ~10 s
def test_cli_lora_finetune_and_predict_by_path(tmp_path, table, esm2_fair_checkpoint):
    out = tmp_path / "lora"
    result = CliRunner().invoke(cli_app, ["finetune", BASE, str(table), "--target", "frac_k", "-o", str(out),
                                          "--weights", str(esm2_fair_checkpoint), "--method", "lora",
                                          "--max-epochs", "3", "-q"])
    assert result.exit_code == 0, result.output
    assert (out / "adapter.safetensors").is_file()
    pred = CliRunner().invoke(cli_app, ["predict", str(out), str(query_fasta(tmp_path)), "-o",
                                        str(tmp_path / "p.csv"), "-q"])
    assert pred.exit_code == 0, pred.output
    got = read_predictions(tmp_path / "p.csv")
    assert np.allclose(list(got.values()), python_values(str(out)), atol=TOLERANCE, rtol=0)


def test_cli_finetune_usage_errors(tmp_path, table):
    result = CliRunner().invoke(cli_app, ["finetune", BASE, str(table), "--target", "frac_k", "-o",
                                          str(tmp_path / "o"), "--method", "full", "-q"])
    assert result.exit_code == 1 and "method must be one of head, lora" in result.output


# -- HTTP: a real `bionemo-lite serve` ---------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory, esm2_fair_checkpoint):
    workdir = tmp_path_factory.mktemp("ftserver")
    env = {"BIONEMO_LITE_HOME": str(workdir / "home"), "BIONEMO_LITE_TORCH_THREADS": "1",
           "BIONEMO_LITE_LOG_LEVEL": "warning", "BIONEMO_LITE_FINETUNE_DIR": str(workdir / "runs"),
           "BIONEMO_LITE_MAX_TOKEN_PASSES": "400000"}
    with running_server(cli_serve("--weights", f"{BASE}={esm2_fair_checkpoint}"), env, workdir) as srv:
        srv.runs = workdir / "runs"
        yield srv


def finetune_body(name: str, **extra) -> dict:
    rows = residue_fraction_rows(120)
    return {"name": name, "sequences": [{"id": r, "sequence": s} for r, s, _ in rows],
            "targets": [y for _, _, y in rows], "target": "frac_k", **extra}


def test_http_finetune_then_predict_by_name(server):
    with httpx.Client(base_url=server.base_url, timeout=300) as client:
        made = client.post(f"/v1/models/{BASE}/finetune", json=finetune_body("http_frac"))
        assert made.status_code == 200, made.text
        body = made.json()
        assert body["model"] == "http_frac" and body["metrics"]["test"]["spearman"] >= 0.8, body["metrics"]
        assert body["card"]["base_model"] == BASE
        listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert "predict" in listed["http_frac"]["verbs"]
        answer = client.post("/v1/models/http_frac/predict",
                             json={"sequences": [{"id": r, "sequence": s} for r, s, _ in QUERY]})
        assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["ids"] == [r for r, _, _ in QUERY] and got["task"] == "regression"
    assert np.allclose(got["values"], python_values(str(server.runs / "http_frac")), atol=TOLERANCE, rtol=0)


def test_http_lora_finetune_within_the_budget(server):
    with httpx.Client(base_url=server.base_url, timeout=300) as client:
        over = client.post(f"/v1/models/{BASE}/finetune", json=finetune_body("too_big", method="lora"))
        assert over.status_code == 422, over.text
        error = over.json()
        assert "bionemo-lite finetune" in str(error) and "request_id" in str(error)
        made = client.post(f"/v1/models/{BASE}/finetune", json=finetune_body("http_lora", method="lora",
                                                                               max_epochs=2))
        assert made.status_code == 200, made.text
        answer = client.post("/v1/models/http_lora/predict", json={"sequences": [s for _, s, _ in QUERY]})
        assert answer.status_code == 200, answer.text
    assert np.allclose(answer.json()["values"], python_values(str(server.runs / "http_lora")), atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("change, status, words", [
    ({"targets": [1.0, 2.0]}, 422, "targets for"),
    ({"name": "1bad"}, 422, "name"),
    ({"task": "ranking"}, 422, "task"),
    ({"name": BASE}, 422, "another model"),
    ({"targets": ["a"] * 120}, 422, "not a number"),
])
def test_http_bad_finetune_bodies(server, change, status, words):
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        response = client.post(f"/v1/models/{BASE}/finetune", json={**finetune_body("x"), **change})
    assert response.status_code == status and words in response.text, response.text


def test_http_predict_errors(server):
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        unknown = client.post("/v1/models/no_such_finetune/predict", json={"sequences": ["MKT"]})
        assert unknown.status_code == 404
        not_a_finetune = client.post(f"/v1/models/{BASE}/predict", json={"sequences": ["MKT"]})
        assert not_a_finetune.status_code in (400, 404, 422) and "predict" in not_a_finetune.text


# -- Triton: the fine-tune exported and served ---------------------------------------------------------

@pytest.mark.slow  # starts a real tritonserver
def test_triton_serves_the_finetune_with_equal_predictions(cli_head, tmp_path):
    from bionemo_lite.triton.client import TritonClient
    from bionemo_lite.triton.export import export_model
    from bionemo_lite.triton.launch import TritonServer, find_tritonserver
    from bionemo_lite.triton.remote import RemoteModel

    if find_tritonserver() is None:
        pytest.skip("no tritonserver binary (install the triton extra)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = export_model("cli_frac", tmp_path / "repository", num_threads=1)
    assert report.triton_models == {"predict": "cli_frac__predict"}
    server = TritonServer(tmp_path / "repository", log_path=tmp_path / "triton.log", startup_timeout=240)
    server.start()
    try:
        with TritonClient(server.http_url, "http") as client:
            remote = RemoteModel(bionemo_lite.get_spec("cli_frac"), client)
            assert isinstance(remote, bionemo_lite.Predictor)
            got = remote.predict({r: s for r, s, _ in QUERY})
    finally:
        server.stop()
    assert got.ids == [r for r, _, _ in QUERY] and not got.errors
    assert np.allclose(got.values, python_values("cli_frac"), atol=TOLERANCE, rtol=0)
    assert os.environ["BIONEMO_LITE_HOME"]  # the server found the fine-tune by name in this weight cache
