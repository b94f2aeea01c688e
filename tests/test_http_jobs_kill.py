"""A 2,000-record FASTA job over HTTP survives 10 random kill -9 of the API or of its worker, on SQLite
and on a real PostgreSQL: the results equal the CLI job's, no record is lost or written twice, and only
the chunks in flight at a kill are computed again (the model logs every record it computes)."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from typer.testing import CliRunner

from bionemo_lite.cli import app as cli
from bionemo_lite.io import read_embeddings
from pg_fixtures import create_database, postgres_server  # noqa: F401  (the session's server)
from server_fixtures import ServerProcess, register_job_toys, uvicorn_factory
from test_http_jobs import _fasta, _records, job_env

pytestmark = pytest.mark.slow
N_RECORDS = 2000
KILLS = 10
CHUNK = 32


def _start(env: dict[str, str], folder: Path, run: int) -> ServerProcess:
    server = ServerProcess(uvicorn_factory("server_fixtures:job_toy_app"), env, folder / f"server-{run}.log")
    server.start()
    return server


def _workers(server: ServerProcess) -> list[psutil.Process]:
    assert server.proc is not None
    return [p for p in psutil.Process(server.proc.pid).children() if "jobs.worker" in " ".join(p.cmdline())]


def _view(server: ServerProcess, job_id: str) -> dict:
    return httpx.get(f"{server.base_url}/v1/jobs/{job_id}", timeout=10).json()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_random_kills_of_api_and_worker_lose_and_duplicate_nothing(database, tmp_path, request):
    rng = random.Random(12)
    log = tmp_path / "computed.log"
    env = job_env(tmp_path, BIONEMO_LITE_JOB_CHUNK_SIZE=str(CHUNK), BIONEMO_LITE_JOB_LEASE_S="1.0",
                  TOY_RECORD_DELAY_S="0.003", TOY_RECORD_LOG=str(log))
    if database == "postgresql":
        env["BIONEMO_LITE_JOB_STORE"] = create_database(request.getfixturevalue("postgres_server"))
    records = _records(N_RECORDS, seed=7)
    fasta = _fasta(tmp_path / "library.fasta", records)
    server = _start(env, tmp_path, 0)
    started = time.monotonic()
    kills: list[tuple[str, int]] = []
    try:
        r = httpx.post(f"{server.base_url}/v1/jobs", timeout=30,
                       data={"request": json.dumps({"verb": "embed", "model": "toy_counter"})},
                       files={"file": ("library.fasta", fasta.read_bytes(), "text/plain")})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        for run in range(1, KILLS + 1):
            # let it make some progress since the last restart, then kill one side at a random moment
            before = len(log.read_text().split()) if log.exists() else 0
            deadline = time.monotonic() + 30
            while (len(log.read_text().split()) if log.exists() else 0) <= before:
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.2))
            print(f"kill {run} at {time.monotonic() - started:.1f} s")
            assert _view(server, job_id)["state"] == "running"
            done = _view(server, job_id)["n_done"]
            if rng.random() < 0.6:  # a worker (restarted by the API) more often than the API itself
                victim = rng.choice(_workers(server))
                os.kill(victim.pid, signal.SIGKILL)
                kills.append(("worker", done))
            else:
                assert server.proc is not None
                os.kill(server.proc.pid, signal.SIGKILL)
                server.proc.wait()
                kills.append(("api", done))
                server = _start(env, tmp_path, run)
        deadline = time.monotonic() + 120
        while (view := _view(server, job_id))["state"] not in ("done", "failed", "cancelled"):
            assert time.monotonic() < deadline, view
            time.sleep(0.05)
        seconds = time.monotonic() - started
        assert view["state"] == "done", view
        assert (view["n_done"], view["n_failed"], view["n_total"]) == (N_RECORDS, 0, N_RECORDS)
        got = httpx.get(f"{server.base_url}/v1/jobs/{job_id}/results", timeout=30)
        assert got.status_code == 200
        (tmp_path / "http.parquet").write_bytes(got.content)
    finally:
        server.stop()
    assert len(kills) == KILLS and {k for k, _ in kills} == {"api", "worker"}

    # the CLI job on the same file, in this process
    register_job_toys()
    out = tmp_path / "cli.parquet"
    result = CliRunner().invoke(cli, ["embed", "toy_counter", str(fasta), "-o", str(out), "--weights",
                                      str(tmp_path / "toy.npz"), "--quiet"])
    assert result.exit_code == 0, result.output
    http, local = read_embeddings(tmp_path / "http.parquet"), read_embeddings(out)
    assert list(http.ids) == list(local.ids) == [r["id"] for r in records]  # each once, in input order
    for rid in local.ids:
        np.testing.assert_array_equal(http.arrays[rid], local.arrays[rid])

    computed = log.read_text().split()
    assert set(computed) == {r["id"] for r in records}
    recomputed = len(computed) - N_RECORDS
    # only what was in flight at a kill: at most one chunk per kill
    assert 0 <= recomputed <= KILLS * CHUNK, recomputed
    print(f"\n[{database}] {N_RECORDS} records, {KILLS} kills ({sum(k == 'api' for k, _ in kills)} API, "
          f"{sum(k == 'worker' for k, _ in kills)} worker) at n_done {[d for _, d in kills]}: "
          f"{recomputed} records computed again (bound {KILLS * CHUNK}), 0 lost, 0 duplicated; {seconds:.1f} s")
