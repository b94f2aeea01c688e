"""Untrusted SMILES never reach RDKit unchecked, and a crash or hang in RDKit fails one record.

``"C" * 15000`` overflows RDKit's stack while it canonicalises (a segfault). These tests send
it through every door (Python in a subprocess, the CLI job in a subprocess, real HTTP), check
the text bounds themselves, and run RDKit on strings past the bounds inside the worker
process to show that a real crash and a real timeout cost only their own record.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bionemo_lite.errors import InvalidInputError
from bionemo_lite.smiles_guard import SmilesParser
from bionemo_lite.smiles_text import (
    RAW_TOKEN_SLACK,
    check_smiles_text,
    count_smiles_tokens,
    max_smiles_characters,
)
from bionemo_lite.zoo.megamolbart.testing import TINY_CONFIG, tiny_checkpoint
from server_fixtures import serve_cli

NAME = "megamolbart"
CRASHING = "C" * 15000  # segfaults RDKit (stack overflow in canonicalisation) in a process with an 8 MiB stack
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


@pytest.fixture(scope="module")
def nemo(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("mmbsafety"))


def _run_python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**os.environ, **env})


# ---------------------------------------------------------------- the text checks (no RDKit)
@pytest.mark.parametrize(
    ("smiles", "position", "words"),
    [
        ("CC O", 3, "whitespace"),
        ("CCé", 3, "'é'"),
        ("CC\x00O", 3, "'\\x00'"),
        ("C>C", 2, "'>'"),
        ("C[NH3+", 2, "never closed"),
        ("C[N[H]]", 4, "inside another"),
        ("CC]", 3, "closes no bracket"),
        ("[" + "C" * 30 + "]", 1, "longer than 24"),
    ],
)
def test_bad_characters_and_brackets_name_the_record_and_position(smiles, position, words):
    with pytest.raises(InvalidInputError) as err:
        check_smiles_text(smiles, "mol-7")
    assert err.value.record == "mol-7" and err.value.position == position and words in err.value.reason


def test_length_is_bounded_by_characters_then_tokens():
    with pytest.raises(InvalidInputError, match="15000 characters; at most 4096") as err:
        check_smiles_text(CRASHING, "long")
    assert err.value.record == "long"
    # derived from the model's tokens: a 10-token model takes at most 2 * 10 * 24 characters
    assert max_smiles_characters(RAW_TOKEN_SLACK * 10) == 480
    with pytest.raises(InvalidInputError, match="for a model of 10 tokens"):
        check_smiles_text("C" * 481, "r", max_tokens=10)
    with pytest.raises(InvalidInputError, match="21 tokens, far more than the model's maximum of 10"):
        check_smiles_text("C" * 21, "r", max_tokens=10)
    assert check_smiles_text(" " + "C" * 20 + "\n", "r", max_tokens=10) == "C" * 20
    # truncation leaves the tokens to the model, never the absolute cap
    assert check_smiles_text("C" * 4000, "r", max_tokens=10, on_too_long="truncate") == "C" * 4000
    with pytest.raises(InvalidInputError, match="at most 4096"):
        check_smiles_text(CRASHING, "r", max_tokens=10, on_too_long="truncate")
    assert count_smiles_tokens("CC(=O)[O-].[Na+]Br%12") == 11  # C C ( = O ) [O-] . [Na+] Br %12


def test_the_python_api_refuses_the_crashing_record_in_process(nemo, tmp_path):
    # In a subprocess with RDKit in the calling process: had the string reached RDKit, this would be a segfault.
    code = f"""
        import bionemo_lite
        from bionemo_lite.errors import InvalidInputError
        model = bionemo_lite.load("{NAME}", weights={str(nemo)!r})
        for verb in (model.embed, model.score, lambda x: model.generate(x, num_molecules=1, seed=0)):
            try:
                verb({{"ok": "CCO", "long": "C" * 15000}})
            except InvalidInputError as exc:
                assert exc.record == "long" and "15000 characters" in exc.reason, exc
            else:
                raise SystemExit("no error")
        skipped = model.embed({{"ok": "CCO", "long": "C" * 15000}}, on_invalid="skip")
        assert skipped.ids == ["ok"] and skipped.errors[0].id == "long"
        print("survived")
    """
    done = _run_python(code, tmp_path, BIONEMO_LITE_SMILES_ISOLATION="inprocess")
    assert done.returncode == 0 and "survived" in done.stdout, done.stderr[-3000:]


def test_the_model_counts_tokens_with_its_own_tokenizer_before_rdkit(nemo):
    import bionemo_lite

    model = bionemo_lite.load(NAME, weights=nemo)
    limit = TINY_CONFIG["max_position_embeddings"]
    too_many = "C" * (RAW_TOKEN_SLACK * limit + 1)
    result = model.embed({"ok": ASPIRIN, "long": too_many, "junk": "C~C"}, on_invalid="skip")
    assert result.ids == ["ok"]
    reasons = {e.id: e.reason for e in result.errors}
    assert f"far more than the model's maximum of {limit}" in reasons["long"]
    assert "'~'" in reasons["junk"]
    # within the raw bound but not after canonicalisation: the model's exact check still applies
    with pytest.raises(InvalidInputError, match=f"more than the model's maximum of {limit}"):
        model.embed({"fits_raw": "C" * (limit + 5)})


# ---------------------------------------------------------------- the worker
def test_parsing_in_the_worker_matches_parsing_in_process():
    texts = [ASPIRIN, "C1CC", "c1ccccc1O", "[Og]", "OC(=O)C"]
    worker, local = SmilesParser("worker"), SmilesParser("inprocess")
    try:
        a, b = worker.parse(texts, list("abcde")), local.parse(texts, list("abcde"))
    finally:
        worker.close()
    assert [x if isinstance(x, str) else (x.record, x.reason) for x in a] == \
           [x if isinstance(x, str) else (x.record, x.reason) for x in b]
    assert a[0] == "CC(=O)Oc1ccccc1C(=O)O" and a[4] == "CC(=O)O" and "cannot be parsed" in a[1].reason


@pytest.mark.slow
def test_a_real_rdkit_crash_in_the_worker_fails_only_its_record():
    # Past the cap on purpose: RDKit really overflows its stack in the worker (~5 s per crash, as it
    # parses 15,000 atoms first: a budget that outlasts it even on a loaded machine).
    parser = SmilesParser("worker", timeout_s=300, max_characters=len(CRASHING))
    try:
        out = parser.parse(["CCO", CRASHING, "c1ccccc1"], ["before", "crash", "after"])
        assert out[0] == "CCO" and out[2] == "c1ccccc1"  # the batch was retried record by record
        assert isinstance(out[1], InvalidInputError) and out[1].record == "crash"
        assert "RDKit crashed parsing this SMILES" in out[1].reason and "signal" in out[1].reason
        assert parser.parse([ASPIRIN], ["next"]) == ["CC(=O)Oc1ccccc1C(=O)O"]  # a new worker took over
    finally:
        parser.close()


def test_a_timeout_in_the_worker_fails_only_its_record():
    # 8,000 atoms take RDKit ~0.75 s, far over a 20 ms budget and the pool's ~0.1 s timeout checks (at 4,000
    # atoms, ~0.25 s on a fast CPU, the answer could come before the check); the pool kills the worker.
    parser = SmilesParser("worker", timeout_s=0.02, max_characters=8000)
    try:
        out = parser.parse(["C" * 8000, "CO"], ["slow", "fast"])
        assert isinstance(out[0], InvalidInputError) and out[0].record == "slow"
        assert "RDKit timed out parsing this SMILES (over 0.02 s)" in out[0].reason
        assert out[1] == "CO"
        assert parser.parse(["CCCl"], ["next"]) == ["CCCl"]
    finally:
        parser.close()


def test_a_script_without_a_main_guard_is_not_run_again_by_the_worker(tmp_path):
    # spawn would re-run an unguarded main script inside the worker; ours starts from an empty __main__.
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent("""
        from bionemo_lite import smiles_guard
        print("script ran", flush=True)
        print(smiles_guard.parse_many(["OCC"], ["x"]))
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("script ran") == 1 and "['CCO']" in done.stdout


def test_the_process_parser_follows_configure_and_the_environment(monkeypatch):
    from bionemo_lite import smiles_guard
    from bionemo_lite.errors import BionemoLiteError

    monkeypatch.setenv(smiles_guard.ISOLATION_ENV, "inprocess")
    monkeypatch.setenv(smiles_guard.TIMEOUT_ENV, "2.5")
    try:
        parser = smiles_guard.configure()
        assert smiles_guard.default_parser() is parser
        assert (parser.isolation, parser.timeout_s, parser.workers) == ("inprocess", 2.5, 1)
        assert smiles_guard.parse_many(["OCC", "C1CC"], ["a", "b"])[0] == "CCO"
        assert smiles_guard.configure(isolation="worker", timeout_s=4).isolation == "worker"
        monkeypatch.setenv(smiles_guard.ISOLATION_ENV, "sometimes")
        with pytest.raises(BionemoLiteError, match="must be 'worker' or 'inprocess'"):
            smiles_guard.configure()
        monkeypatch.setenv(smiles_guard.ISOLATION_ENV, "worker")
        monkeypatch.setenv(smiles_guard.WORKERS_ENV, "0")
        with pytest.raises(BionemoLiteError, match="BIONEMO_LITE_SMILES_WORKERS must be positive"):
            smiles_guard.configure()
    finally:
        monkeypatch.undo()
        smiles_guard.configure()  # back to the environment's (default) parser


# ---------------------------------------------------------------- HTTP
@pytest.fixture(scope="module")
def server(tmp_path_factory, nemo):
    with serve_cli(tmp_path_factory.mktemp("mmbsafetyserver"), "--weights", f"{NAME}={nemo}") as srv:
        yield srv


@pytest.mark.slow
@pytest.mark.parametrize("verb", ["embed", "score", "generate"])
@pytest.mark.parametrize("truncate", [False, True])
def test_the_crashing_record_is_a_422_and_the_server_serves_on(client, verb, truncate):
    body = {"sequences": [{"id": "ok", "sequence": "CCO"}, {"id": "poison", "sequence": CRASHING}]}
    if verb != "generate":
        body["truncate"] = truncate
    r = client.post(f"/v1/models/{NAME}/{verb}", json=body)
    assert r.status_code == 422, r.text
    answer = r.json()
    assert answer["error"] == "invalid_input" and answer["record"] == "poison" and answer["request_id"]
    assert "15000 characters" in answer["reason"]
    follow = {"sequences": [{"id": "ok", "sequence": ASPIRIN}]}
    if verb == "generate":
        follow.update(num_molecules=1, seed=0, max_rounds=1)
    nxt = client.post(f"/v1/models/{NAME}/{verb}", json=follow)
    assert nxt.status_code == 200, nxt.text


@pytest.mark.slow
def test_bad_characters_are_422_with_the_position(client):
    r = client.post(f"/v1/models/{NAME}/embed", json={"sequences": [{"id": "odd", "sequence": "CC\u2603O"}]})
    assert r.status_code == 422, r.text
    answer = r.json()
    assert answer["record"] == "odd" and answer["position"] == 3 and "'\u2603'" in answer["reason"]


# ---------------------------------------------------------------- the CLI batch job
@pytest.mark.slow
def test_a_cli_job_with_the_crashing_record_finishes_and_lists_it(nemo, tmp_path):
    table = tmp_path / "mols.csv"
    with open(table, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "smiles"])
        writer.writerows([("aspirin", ASPIRIN), ("poison", CRASHING), ("ethanol", "CCO")])
    out = tmp_path / "mols.parquet"
    command = [sys.executable, "-m", "bionemo_lite.cli", "embed", NAME, str(table), "-o", str(out),
               "--weights", str(nemo), "-q"]
    for attempt in range(2):  # the job finishes, and so does a re-run (it used to exit 139 every time)
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, (attempt, done.returncode, done.stderr[-3000:])
    import pyarrow.parquet as pq

    assert pq.read_table(out, columns=["id"]).column("id").to_pylist() == ["aspirin", "ethanol"]
    with open(f"{out}.errors.csv", newline="") as fh:
        [error] = list(csv.DictReader(fh))
    assert error["id"] == "poison" and "15000 characters" in error["reason"]


# ---------------------------------------------------------------- Triton's model.py
@pytest.fixture(scope="module")
def triton_client(nemo, tmp_path_factory):
    import warnings

    from bionemo_lite.triton.client import TritonClient
    from bionemo_lite.triton.export import export_model
    from bionemo_lite.triton.launch import TritonServer, find_tritonserver

    if find_tritonserver() is None:
        pytest.skip("no tritonserver binary (install the triton extra)")
    repo = tmp_path_factory.mktemp("mmbsafetytriton") / "repository"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a tiny checkpoint under the published name warns about its size
        export_model(NAME, repo, weights=nemo, num_threads=1)
    server = TritonServer(repo, log_path=repo.parent / "triton.log", startup_timeout=240)
    server.start()
    try:
        with TritonClient(server.http_url, "http") as client:
            yield client
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("verb", ["embed", "score"])
def test_triton_model_refuses_the_crashing_record_and_serves_on(triton_client, verb):
    call = getattr(triton_client, verb)
    with pytest.raises(InvalidInputError) as err:
        call(NAME, {"ok": "CCO", "poison": CRASHING})
    assert err.value.record == "poison" and "15000 characters" in err.value.reason
    assert call(NAME, {"ok": ASPIRIN}).ids == ["ok"]
