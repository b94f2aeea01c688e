"""The command line without a model family: listing, weights, usage errors, error messages.

The end-to-end batch commands with the ESM-2 checkpoint are in test_cli_esm2.py.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import bionemo_lite
from bionemo_lite.cli import app, parse_options
from bionemo_lite.io import read_embeddings
from bionemo_lite.registry import unregister
from bionemo_lite.spec import ModelSpec, WeightFile, WeightSource
from jobs_fixtures import SPEC, expected_vectors

BIN = Path(sys.executable).parent / "bionemo-lite"
runner = CliRunner()


def _plain(text: str) -> str:
    """Error text without typer's box drawing and line wrapping."""
    return " ".join(text.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())


@pytest.fixture
def toy_model():
    """The numpy test model registered under its name, removed afterwards."""
    bionemo_lite.register(SPEC)
    yield SPEC.name
    unregister(SPEC.name)


@pytest.fixture
def fasta(tmp_path) -> Path:
    path = tmp_path / "in.fasta"
    path.write_text(">a\nMKV\n>b\nmktl\n>c\nMKJ\n")
    return path


def _spec_with_weights(name: str, url: str, sha256: str | None = None) -> ModelSpec:
    return ModelSpec(name=name, family="test", verbs={"embed"}, loader="jobs_fixtures:load",
                     weights=(WeightSource("test", (WeightFile("w.bin", url, sha256),), entry="w.bin"),))


def test_models_table_and_json(toy_model):
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["name", "family", "verbs", "params", "max_length", "weights"]
    assert any(line.split() == [SPEC.name, "test", "embed,score", "-", "40", "no"] for line in lines)
    listed = json.loads(runner.invoke(app, ["models", "--json", "--verb", "score"]).stdout)
    mine = next(m for m in listed if m["name"] == SPEC.name)
    assert mine["weights_available"] is False and mine["max_length"] == 40
    assert all("score" in m["verbs"] for m in listed)
    assert json.loads(runner.invoke(app, ["models", "--json", "--verb", "fold"]).stdout) == [
        m for m in json.loads(runner.invoke(app, ["models", "--json"]).stdout) if "fold" in m["verbs"]]


def test_an_unknown_verb_is_a_usage_error_listing_the_verbs(toy_model):
    result = runner.invoke(app, ["models", "--verb", "folding"])
    assert result.exit_code == 2 and result.stdout == ""  # not an empty table and success
    message = _plain(result.stderr)
    assert "--verb" in message and "unknown verb 'folding'" in message
    assert "the verbs are: contacts, decode, embed, fold, generate, score" in message


def test_models_starts_fast_without_torch():
    started = time.perf_counter()
    proc = subprocess.run([str(BIN), "models"], capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("name")
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from bionemo_lite.cli import app; from typer.main import get_command;"
         "get_command(app)(['models'], standalone_mode=False); print(sorted(m for m in ('torch', 'pyarrow', 'h5py')"
         " if m in sys.modules))"],
        capture_output=True, text=True, timeout=60,
    )
    assert probe.stdout.strip().splitlines()[-1] == "[]", probe.stderr
    assert elapsed < 10  # a generous bound for a loaded 2-core machine; typically about 1 s


def test_unknown_model_names_close_matches(fasta, tmp_path):
    proc = subprocess.run([str(BIN), "embed", "esm2_t6_8M", str(fasta), "-o", str(tmp_path / "o.parquet")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "unknown model 'esm2_t6_8M'; did you mean esm2_t6_8M_UR50D" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_missing_weights_say_how_to_get_them(toy_model, fasta, tmp_path):
    result = runner.invoke(app, ["embed", toy_model, str(fasta), "-o", str(tmp_path / "o.parquet")])
    assert result.exit_code == 1
    assert "weights for 'composition_test' not found" in result.stderr
    assert "pass a checkpoint path with weights=... / --weights" in result.stderr


def test_a_verb_the_model_lacks(toy_model, fasta, tmp_path):
    result = runner.invoke(app, ["generate", toy_model, str(fasta), "-o", str(tmp_path / "o.csv"),
                                 "--weights", str(fasta)])
    assert result.exit_code == 1
    assert "model 'composition_test' cannot generate; it supports: embed, score" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["embed", "M", "IN", "-o", "out.json"], "output extension must be one of .parquet, .h5"),
        (["score", "M", "IN", "-o", "out.npz"], "output extension must be one of .parquet, .csv, .tsv"),
        (["score", "M", "IN", "-o", "out.csv", "--method", "masked_marginals"], "needs --mutations FILE"),
        (["score", "M", "IN", "-o", "out.csv", "--method", "pll", "--mutations", "IN"], "--mutations needs --method"),
        (["generate", "M", "IN", "-o", "out.csv", "--option", "noequals"], "expected KEY=VALUE"),
        (["embed", "M", "missing.fasta", "-o", "out.parquet"], "does not exist"),
        (["embed", "M", "IN", "-o", "out.parquet", "--chunk-size", "0"], "--chunk-size"),
        (["fold", "M", "IN", "-o", "outdir", "--format", "xyz"], "must be pdb or cif"),
    ],
)
def test_usage_errors_exit_2(toy_model, fasta, args, message):
    args = [str(fasta) if a == "IN" else a for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in _plain(result.stderr)


ESM2 = "esm2_t6_8M_UR50D"  # registered by the esm2 plugin; no weights in the test cache


@pytest.mark.parametrize(
    "args, hint, message",
    [
        (["embed", ESM2, "IN", "-o", "o.parquet", "--pooling", "maximum"], "--pooling", "pooling must be one of mean"),
        (["embed", ESM2, "IN", "-o", "o.parquet", "--layer", "7"], "--layer",
         "layer 7 does not exist: the model has layers 0..6"),
        (["embed", ESM2, "IN", "-o", "o.parquet", "--layer", "-8"], "--layer", "layer -8 does not exist"),
        (["embed", ESM2, "HEADER", "-o", "o.parquet"], "INPUT", "has no 'sequence' or 'smiles' column"),
        (["score", ESM2, "HEADER", "-o", "o.csv"], "INPUT", "has no 'sequence' or 'smiles' column"),
        (["generate", ESM2, "HEADER", "-o", "o.csv"], "INPUT", "has no 'sequence' or 'smiles' column"),
        (["score", ESM2, "WT", "-o", "o.csv", "--mutations", "HEADER"], "--mutations", "has no 'mutation' column"),
        (["embed", ESM2, "IN", "-o", "o.parquet", "--dtype", "float17"], "--dtype", "unknown dtype 'float17'"),
        (["embed", ESM2, "IN", "-o", "o.parquet", "--numerics", "exact"], "--numerics",
         "numerics must be one of fast, reference for esm2_t6_8M_UR50D, got 'exact'"),
        (["score", ESM2, "IN", "-o", "o.csv", "--numerics", "exact"], "--numerics", "numerics must be one of"),
        (["generate", ESM2, "IN", "-o", "o.csv", "--numerics", "exact"], "--numerics", "numerics must be one of"),
        (["contacts", ESM2, "IN", "-o", "o.h5", "--numerics", "exact"], "--numerics", "numerics must be one of"),
    ],
)
def test_options_and_input_are_checked_before_the_model_loads(fasta, tmp_path, args, hint, message):
    # No weights are cached: reaching the model would fail with "weights ... not found" (exit 1).
    header = tmp_path / "in.csv"
    header.write_text("id,protein\na,MKV\n")
    wild_type = tmp_path / "wt.fasta"
    wild_type.write_text(">wt\nMKV\n")
    args = [{"IN": str(fasta), "HEADER": str(header), "WT": str(wild_type)}.get(a, a) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert hint in _plain(result.stderr) and message in _plain(result.stderr)


def test_layers_are_only_checked_early_when_the_spec_knows_them(toy_model, fasta, tmp_path):
    result = runner.invoke(app, ["embed", toy_model, str(fasta), "-o", str(tmp_path / "o.parquet"), "--layer", "9"])
    assert result.exit_code == 1 and "weights for 'composition_test' not found" in result.stderr


def test_parse_options():
    assert parse_options(["scaled_radius=0.5", "method=greedy-perturbate", "num-molecules=3", "flag=true"]) == {
        "scaled_radius": 0.5, "method": "greedy-perturbate", "num_molecules": 3, "flag": True}


def test_embed_through_the_registry(toy_model, fasta, tmp_path):
    out = tmp_path / "o.npz"
    result = runner.invoke(app, ["embed", toy_model, str(fasta), "-o", str(out), "--weights", str(fasta),
                                 "--layer", "-1", "--layer", "0", "--pooling", "per_residue", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 records" in result.stderr and "1 failed" in result.stderr
    back = read_embeddings(out)
    assert back.ids == ["a", "b"]
    assert back.arrays["b"].tolist() == [expected_vectors("MKTL", 2).tolist(), expected_vectors("MKTL", 0).tolist()]
    assert Path(f"{out}.errors.csv").read_text().splitlines()[1].startswith("c,position 3: invalid residue 'J'")


def test_a_job_where_every_record_fails_exits_1(toy_model, tmp_path):
    bad = tmp_path / "bad.fasta"
    bad.write_text(">x\nMK1\n>y\nMK*\n")
    result = runner.invoke(app, ["score", toy_model, str(bad), "-o", str(tmp_path / "s.csv"), "--weights", str(bad)])
    assert result.exit_code == 1
    assert "every record failed" in result.stderr
    assert len((tmp_path / "s.csv.errors.csv").read_text().splitlines()) == 3


def test_an_empty_input_exits_1(toy_model, tmp_path):
    empty = tmp_path / "empty.fasta"
    empty.write_text("")
    result = runner.invoke(app, ["embed", toy_model, str(empty), "-o", str(tmp_path / "o.h5"), "--weights", str(empty)])
    assert result.exit_code == 1 and "the input holds no records" in result.stderr


def test_weights_pull_offline_is_a_clean_error():
    bionemo_lite.register(_spec_with_weights("offline_test", "http://127.0.0.1:9/w.bin"))  # nothing listens on 9
    try:
        proc_result = runner.invoke(app, ["weights", "pull", "offline_test", "--quiet"])
    finally:
        unregister("offline_test")
    assert proc_result.exit_code == 1
    assert proc_result.stderr.startswith("Error: could not fetch weights for 'offline_test'")
    assert "could not download http://127.0.0.1:9/w.bin" in proc_result.stderr
    assert "Traceback" not in proc_result.output and proc_result.exception is not None  # SystemExit(1) only
    assert isinstance(proc_result.exception, SystemExit)


def test_weights_pull_and_list(tmp_path):
    payload = b"weights" * 1000
    served = tmp_path / "served"
    served.mkdir()
    (served / "w.bin").write_bytes(payload)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/w.bin"
    bionemo_lite.register(_spec_with_weights("pull_test", url, hashlib.sha256(payload).hexdigest()))
    bionemo_lite.register(_spec_with_weights("corrupt_test", url, "0" * 64))
    try:
        before = json.loads(runner.invoke(app, ["weights", "list", "--json"]).stdout)
        assert next(e for e in before if e["name"] == "pull_test")["cached"] is False
        pulled = runner.invoke(app, ["weights", "pull", "pull_test", "--quiet"])
        assert pulled.exit_code == 0, pulled.output
        path = Path(pulled.stdout.strip())
        assert path.read_bytes() == payload and path.parent.name == "pull_test"
        after = json.loads(runner.invoke(app, ["weights", "list", "--json"]).stdout)
        assert next(e for e in after if e["name"] == "pull_test") == {"name": "pull_test", "cached": True,
                                                                        "path": str(path)}
        table = runner.invoke(app, ["weights", "list"]).stdout.splitlines()
        assert any(line.split() == ["pull_test", "yes", str(path)] for line in table)
        corrupt = runner.invoke(app, ["weights", "pull", "corrupt_test", "--quiet"])
        assert corrupt.exit_code == 1 and "does not match the published" in corrupt.stderr
    finally:
        server.shutdown()
        unregister("pull_test")
        unregister("corrupt_test")


def test_serve_rejects_bad_settings_as_usage_errors():
    result = runner.invoke(app, ["serve", "--backend", "nope"])
    assert result.exit_code == 2 and "backend" in _plain(result.stderr)
    result = runner.invoke(app, ["serve", "--weights", "no-equals-sign"])
    assert result.exit_code == 2 and "NAME=PATH" in _plain(result.stderr)


# -- paper cuts -------------------------------------------------------------------------------------


def test_version():
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"bionemo-lite {version('bionemo-lite')}\n"


def _help(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize(
    "command, usage",
    [(["embed"], "MODEL INPUT"), (["contacts"], "MODEL INPUT"), (["score"], "MODEL INPUT"),
     (["generate"], "MODEL INPUT"), (["fold"], "MODEL INPUT"), (["export"], "MODEL"), (["triton", "export"], "MODEL"),
     (["weights", "pull"], "MODEL"), (["serve"], ""), (["models"], "")],
)
def test_usage_lines_name_the_arguments_in_capitals(command, usage):
    text = _help(*command)
    assert text.splitlines()[0].rstrip() == f"Usage: bionemo-lite {' '.join(command)} [OPTIONS] {usage}".rstrip()


def test_help_shows_every_default():
    from bionemo_lite.server.settings import Settings

    from bionemo_lite.cli import SERVE_DEFAULTS

    serve = " ".join(_help("serve").split())
    assert "Address to bind (0.0.0.0 for other machines). [default: 127.0.0.1]" in serve
    assert "Port. [default: 8000; 0<=x<=65535]" in serve and "inprocess or triton. [default: inprocess]" in serve
    assert "bind ." not in serve and "Records per request. [default: 32; x>=1]" in serve
    # The shown defaults are the service's own.
    assert SERVE_DEFAULTS == {name: Settings.model_fields[name].default for name in SERVE_DEFAULTS}
    embed = " ".join(_help("embed").split())
    assert "[default: mean]" in embed and "[default: cpu]" in embed and "[default: 512; x>=1]" in embed
    triton = " ".join(_help("triton", "serve").split())
    assert "[default: 8010; 1<=x<=65535]" in triton and "[default: 127.0.0.1]" in triton


def test_serve_options_left_out_keep_the_environment(tmp_path):
    """Shown defaults must not override BIONEMO_LITE_* variables: the port comes from the environment."""
    from server_fixtures import ServerProcess

    server = ServerProcess(lambda port: [sys.executable, "-m", "bionemo_lite.cli", "serve"], {}, tmp_path / "log")
    server.env.update({"BIONEMO_LITE_PORT": str(server.port), "BIONEMO_LITE_LOG_LEVEL": "warning",
                       "BIONEMO_LITE_HOME": str(tmp_path / "cache")})
    server.start(timeout=60)
    try:
        import httpx

        assert httpx.get(f"{server.base_url}/v1/health/live", timeout=5).status_code == 200
    finally:
        server.stop()


def test_serve_numerics_flag():
    bad = runner.invoke(app, ["serve", "--numerics", "exact"])
    assert bad.exit_code == 2 and "--numerics" in _plain(bad.stderr)
    assert "must be one of fast, reference; got 'exact'" in _plain(bad.stderr)
    # The flag parses and reaches the settings (the lead's end-to-end test checks what the service does with it).
    parsed = runner.invoke(app, ["serve", "--numerics", "reference", "--backend", "nope"])
    assert parsed.exit_code == 2 and "No such option" not in parsed.stderr and "backend" in _plain(parsed.stderr)


def test_quiet_leaves_no_trace_in_the_process(toy_model, fasta, tmp_path):
    import logging
    import os

    before = dict(os.environ)
    result = runner.invoke(app, ["embed", toy_model, str(fasta), "-o", str(tmp_path / "o.h5"), "--weights",
                                 str(fasta), "-q"])
    assert result.exit_code == 0, result.output
    assert "INFO" not in result.stderr and "wrote 2 records" in result.stderr  # quiet while it ran
    assert logging.root.manager.disable == logging.NOTSET and dict(os.environ) == before  # and only then
