"""Jobs over HTTP against a real uvicorn server with a real worker process and the SQLite store:
submit (inline and uploaded), poll, download (equal to the CLI job's output), errors, cancel, delete,
paging, key isolation and the upload size limit."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import bionemo_lite
from bionemo_lite.io import InputFile, read_embeddings
from bionemo_lite.jobs import EmbedTask, ScoreTask, job_identity, run_job
from keys_fixtures import add_key, assert_error_body, bearer
from server_fixtures import RESIDUES, register_job_toys, running_server, uvicorn_factory, write_toy_weights

LETTERS = RESIDUES[:20]
pytestmark = pytest.mark.slow


def _records(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = np.random.default_rng(seed)
    return [{"id": f"r{i}", "sequence": "".join(rng.choice(list(LETTERS), size=int(rng.integers(5, 40))))}
            for i in range(n)]


def _fasta(path: Path, records: list[dict[str, str]]) -> Path:
    path.write_text("".join(f">{r['id']}\n{r['sequence']}\n" for r in records))
    return path


def job_env(folder: Path, **extra: str) -> dict[str, str]:
    weights = write_toy_weights(folder / "toy.npz")
    return {"BIONEMO_LITE_HOME": str(folder / "home"), "BIONEMO_LITE_NO_PLUGINS": "1",
            "BIONEMO_LITE_WEIGHTS": json.dumps({"toy_encoder": str(weights), "toy_counter": str(weights),
                                                 "toy_job_folder": str(weights)}),
            "BIONEMO_LITE_DEFAULT_MODEL": "off", "BIONEMO_LITE_JOB_WORKER_INIT": "server_fixtures:register_job_toys",
            "BIONEMO_LITE_JOB_CHUNK_SIZE": "16", "BIONEMO_LITE_JOB_POLL_S": "0.05",
            "BIONEMO_LITE_JOB_LEASE_S": "3", "BIONEMO_LITE_LOG_LEVEL": "warning", **extra}


def wait_done(client: httpx.Client, job_id: str, timeout: float = 60.0, headers: dict | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        view = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if view["state"] in ("done", "failed", "cancelled"):
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.05)


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jobs-http")
    keys = folder / "keys.json"
    alice, bob = add_key(keys, "alice"), add_key(keys, "bob")
    env = job_env(folder, BIONEMO_LITE_API_KEYS=str(keys), BIONEMO_LITE_MAX_UPLOAD_BYTES="200000",
                  TOY_RECORD_DELAY_S="0.02", TOY_RECORD_LOG=str(folder / "records.log"),
                  BIONEMO_LITE_JOB_SLICE_S="0.3")
    with running_server(uvicorn_factory("server_fixtures:job_toy_app"), env, folder) as server:
        server.folder = folder
        server.alice, server.bob = bearer(alice), bearer(bob)
        yield server


def _local_embed(folder: Path, records: list[dict[str, str]], output: Path) -> Path:
    """The same job through the Python API / CLI's `run_job`, in this process."""
    register_job_toys()
    model = bionemo_lite.load("toy_encoder", weights=folder / "toy.npz")
    source = InputFile(_fasta(folder / "local.fasta", records))
    run_job(source, EmbedTask(model, layers=(-1,), pooling="mean"), output, params=job_identity(model),
            progress=False)
    return output


def test_inline_embed_job_equals_the_cli_job(keyed_server, tmp_path):
    records = _records(70)
    records[5]["sequence"] = "MKT1QR"  # not a residue: fails alone, reported in the errors file
    with httpx.Client(base_url=keyed_server.base_url, timeout=30, headers=keyed_server.alice) as client:
        r = client.post("/v1/jobs", json={"verb": "embed", "model": "toy_encoder", "records": records,
                                          "options": {"pooling": "mean"}})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["state"] in ("queued", "running") and job["n_total"] == 70 and job["owner"] == "alice"
        assert job["links"]["results"] == f"/v1/jobs/{job['id']}/results"
        view = wait_done(client, job["id"])
        assert view["state"] == "done", view
        assert (view["n_done"], view["n_failed"], view["progress"]) == (69, 1, 1.0)
        assert view["started_at"] and view["finished_at"] >= view["started_at"]
        got = client.get(f"/v1/jobs/{job['id']}/results")
        assert got.status_code == 200 and got.headers["content-type"] == "application/vnd.apache.parquet"
        (tmp_path / "http.parquet").write_bytes(got.content)
        errors = list(csv.DictReader(io.StringIO(client.get(f"/v1/jobs/{job['id']}/errors").text)))
    assert [e["id"] for e in errors] == ["r5"] and "1" in errors[0]["reason"]
    local = _local_embed(keyed_server.folder, records, tmp_path / "cli.parquet")
    http, cli = read_embeddings(tmp_path / "http.parquet"), read_embeddings(local)
    assert list(http.ids) == list(cli.ids) and len(http.ids) == 69
    assert http.model == cli.model == "toy_encoder" and http.lengths == cli.lengths
    for rid in cli.ids:
        np.testing.assert_array_equal(http.arrays[rid], cli.arrays[rid])


def test_uploaded_fasta_score_job_as_csv(keyed_server, tmp_path):
    records = _records(40, seed=1)
    fasta = _fasta(tmp_path / "in.fasta", records)
    with httpx.Client(base_url=keyed_server.base_url, timeout=30, headers=keyed_server.bob) as client:
        request = {"verb": "score", "model": "toy_encoder", "output_format": "parquet"}
        r = client.post("/v1/jobs", data={"request": json.dumps(request)},
                        files={"file": ("in.fasta", fasta.read_bytes(), "text/plain")})
        assert r.status_code == 202, r.text
        view = wait_done(client, r.json()["id"])
        assert (view["state"], view["n_done"], view["n_total"]) == ("done", 40, 40), view
        table = pacsv.read_csv(io.BytesIO(client.get(f"/v1/jobs/{view['id']}/results?format=csv").content))
    register_job_toys()
    model = bionemo_lite.load("toy_encoder", weights=keyed_server.folder / "toy.npz")
    run_job(InputFile(fasta), ScoreTask(model), tmp_path / "cli.parquet", params=job_identity(model), progress=False)
    cli = pq.read_table(tmp_path / "cli.parquet")
    assert table.column("id").to_pylist() == cli.column("id").to_pylist() == [r["id"] for r in records]
    np.testing.assert_allclose(table.column("score").to_numpy(), cli.column("score").to_numpy(), rtol=1e-12)


def test_owners_are_isolated_and_pages_list_only_ones_own(keyed_server):
    with httpx.Client(base_url=keyed_server.base_url, timeout=30) as client:
        ids = []
        for i in range(3):
            r = client.post("/v1/jobs", headers=keyed_server.alice,
                            json={"verb": "score", "model": "toy_encoder", "records": _records(2, seed=10 + i)})
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        for path in (f"/v1/jobs/{ids[0]}", f"/v1/jobs/{ids[0]}/results", f"/v1/jobs/{ids[0]}/errors"):
            assert_error_body(client.get(path, headers=keyed_server.bob), 404, "job_not_found")
        assert_error_body(client.post(f"/v1/jobs/{ids[0]}/cancel", headers=keyed_server.bob), 404, "job_not_found")
        assert_error_body(client.delete(f"/v1/jobs/{ids[0]}", headers=keyed_server.bob), 404, "job_not_found")
        assert client.get(f"/v1/jobs/{ids[0]}", headers=keyed_server.alice).status_code == 200
        assert_error_body(client.get("/v1/jobs/nope", headers=keyed_server.alice), 404, "job_not_found")
        assert client.get("/v1/jobs").status_code == 401
        seen, offset = [], 0
        while offset is not None:
            page = client.get(f"/v1/jobs?limit=2&offset={offset}", headers=keyed_server.alice).json()
            assert len(page["jobs"]) <= 2
            seen += [j["id"] for j in page["jobs"]]
            offset = page["next_offset"]
        assert set(ids) <= set(seen) and len(seen) == len(set(seen))
        assert all(j["owner"] == "alice" for j in
                   client.get("/v1/jobs?limit=500", headers=keyed_server.alice).json()["jobs"])
        bobs = {j["id"] for j in client.get("/v1/jobs?limit=500", headers=keyed_server.bob).json()["jobs"]}
        assert not bobs & set(ids)


def test_cancel_delete_not_done_and_bad_requests(keyed_server, tmp_path):
    with httpx.Client(base_url=keyed_server.base_url, timeout=30, headers=keyed_server.alice) as client:
        # slow enough (20 ms per record) to be cancelled while queued or running
        r = client.post("/v1/jobs", json={"verb": "embed", "model": "toy_counter", "records": _records(300, seed=3)})
        job_id = r.json()["id"]
        assert_error_body(client.get(f"/v1/jobs/{job_id}/results"), 409, "job_not_done")
        time.sleep(0.5)
        cancelled = client.post(f"/v1/jobs/{job_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        time.sleep(1.0)  # the worker stops at its next chunk (16 records, 0.3 s)
        log = keyed_server.folder / "records.log"
        computed = len(log.read_text().split()) if log.exists() else 0
        time.sleep(1.0)
        assert (len(log.read_text().split()) if log.exists() else 0) == computed < 300
        assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "cancelled"
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
        assert_error_body(client.get(f"/v1/jobs/{job_id}"), 404, "job_not_found")
        # bad submissions: 4xx naming the problem, no job made
        assert_error_body(client.post("/v1/jobs", json={"verb": "embed", "model": "toy_nope",
                                                        "records": [{"sequence": "MK"}]}), 404, "unknown_model")
        assert_error_body(client.post("/v1/jobs", json={"verb": "fold", "model": "toy_encoder",
                                                        "records": [{"sequence": "MK"}]}), 404, "unsupported_verb")
        body = assert_error_body(client.post("/v1/jobs", json={"verb": "embed", "model": "toy_encoder",
                                                               "options": {"pooling": "max"},
                                                               "records": [{"sequence": "MK"}]}), 422, "invalid_input")
        assert "max" in body["detail"]  # the toy family has no max pooling: refused before any worker runs
        body = assert_error_body(client.post("/v1/jobs", json={"verb": "embed", "model": "toy_encoder",
                                                               "options": {"poolin": "mean"},
                                                               "records": [{"sequence": "MK"}]}), 422, "invalid_input")
        assert "poolin" in body["detail"]
        assert_error_body(client.post("/v1/jobs", json={"verb": "embed", "model": "toy_encoder"}), 422,
                          "invalid_input")
        assert_error_body(client.post("/v1/jobs", json={"verb": "embed", "model": "toy_encoder",
                                                        "output_format": "csv", "records": [{"sequence": "MK"}]}),
                          422, "invalid_input")
        assert_error_body(client.post("/v1/jobs", json={"verb": "embed", "model": "toy_encoder",
                                                        "records": [{"id": "a", "sequence": "MK"},
                                                                    {"id": "a", "sequence": "MK"}]}),
                          422, "invalid_input")
        assert_error_body(client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}),
                          422, "invalid_request")
        # the upload limit (200,000 bytes here): refused before the file is stored
        big = _fasta(tmp_path / "big.fasta", [{"id": f"b{i}", "sequence": "ACDEFGHIKL" * 4} for i in range(5000)])
        r = client.post("/v1/jobs", data={"request": json.dumps({"verb": "embed", "model": "toy_encoder"})},
                        files={"file": ("big.fasta", big.read_bytes(), "text/plain")})
        assert_error_body(r, 413, "payload_too_large")
        assert "max_upload_bytes" in r.json()["detail"]
        uploads = keyed_server.folder / "home" / "jobs" / "uploads"
        assert not uploads.exists() or not list(uploads.iterdir())


def _computed(server) -> list[str]:
    log = server.folder / "records.log"
    return log.read_text().split() if log.exists() else []


def test_a_big_job_does_not_starve_another_owners_small_one(keyed_server):
    """One worker; alice's 300-record job (6 s of model time) is running when bob submits 8 records:
    bob's job is done while alice's still runs (slices of 0.3 s, the owner served least recently next)."""
    with httpx.Client(base_url=keyed_server.base_url, timeout=30) as client:
        big = client.post("/v1/jobs", headers=keyed_server.alice,
                          json={"verb": "embed", "model": "toy_counter", "records": _records(300, seed=20)}).json()
        deadline = time.monotonic() + 30
        while client.get(f"/v1/jobs/{big['id']}", headers=keyed_server.alice).json()["n_done"] < 16:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        small = client.post("/v1/jobs", headers=keyed_server.bob,
                            json={"verb": "embed", "model": "toy_counter", "records": _records(8, seed=21)}).json()
        done = wait_done(client, small["id"], headers=keyed_server.bob)
        alice = client.get(f"/v1/jobs/{big['id']}", headers=keyed_server.alice).json()
        client.post(f"/v1/jobs/{big['id']}/cancel", headers=keyed_server.alice)
    assert done["state"] == "done" and done["n_done"] == 8
    assert alice["state"] == "running" and alice["n_done"] < 300, alice


def test_records_computed_before_are_served_from_the_store(keyed_server):
    first = _records(20, seed=30)
    again = [{"id": f"again-{r['id']}", "sequence": r["sequence"]} for r in first[:12]] + _records(5, seed=31)
    with httpx.Client(base_url=keyed_server.base_url, timeout=30, headers=keyed_server.alice) as client:
        def run(records, **extra):
            before = len(_computed(keyed_server))
            job = client.post("/v1/jobs", json={"verb": "embed", "model": "toy_counter", "records": records,
                                                "options": {"pooling": "bos"}, **extra}).json()
            view = wait_done(client, job["id"])
            assert view["state"] == "done", view["error"]
            content = client.get(f"/v1/jobs/{job['id']}/results?format=parquet").content
            return view, _computed(keyed_server)[before:], content

        run(first)
        cached, computed, content = run(again)
        fresh, computed_fresh, content_fresh = run(again, dedup=False)
        # other options: another key, nothing from the cache
        other, computed_other, _ = run(again[:3], options={"pooling": "mean"})
    assert cached["n_cached"] == 12 and sorted(computed) == sorted(r["id"] for r in again[12:])
    assert fresh["n_cached"] == 0 and sorted(computed_fresh) == sorted(r["id"] for r in again)
    assert other["n_cached"] == 0 and len(computed_other) == 3
    a, b = pq.read_table(io.BytesIO(content)), pq.read_table(io.BytesIO(content_fresh))
    assert a.column("id").to_pylist() == [r["id"] for r in again]
    assert a.equals(b)  # served from the store or computed: the same file


def test_a_fold_job_downloads_a_zip_of_structures_and_summary(keyed_server):
    import zipfile

    records = [{"id": "a", "sequence": "MKTAYIAKQR"}, {"id": "b/c", "sequence": "GSHMLE:KKR"}, {"id": "bad", "sequence": "MK1"}]
    with httpx.Client(base_url=keyed_server.base_url, timeout=30, headers=keyed_server.alice) as client:
        r = client.post("/v1/jobs", json={"verb": "fold", "model": "toy_job_folder", "records": records,
                                          "options": {"format": "mmcif", "num_recycles": 2}})
        assert r.status_code == 202, r.text
        view = wait_done(client, r.json()["id"])
        assert (view["state"], view["n_done"], view["n_failed"], view["output_format"]) == ("done", 2, 1, "zip"), view["error"]
        got = client.get(f"/v1/jobs/{view['id']}/results")
        errors = client.get(f"/v1/jobs/{view['id']}/errors").text
    assert got.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(got.content))
    names = sorted(archive.namelist())
    assert "summary.csv" in names and "a.cif" in names and "errors.csv" in names and len(names) == 4, names
    summary = list(csv.DictReader(io.StringIO(archive.read("summary.csv").decode())))
    assert [row["id"] for row in summary] == ["a", "b/c"]
    assert all(Path(row["path"]).name in names for row in summary)
    assert "recycles=2" in archive.read("a.cif").decode()
    assert errors.splitlines()[1].startswith("bad,")
