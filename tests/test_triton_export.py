"""Triton export (python and ONNX formats), the launcher's failure modes and the CLI commands.

The ONNX test exports the tiny ESM-2, checks the graph against torch in
onnxruntime, and serves it from a real tritonserver (onnxruntime inside the
python backend, as the nvidia-pytriton wheel has no onnxruntime backend).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import bionemo_lite
from bionemo_lite.errors import BackendUnavailableError, BionemoLiteError, InvalidInputError, UnsupportedVerbError
from bionemo_lite.triton.cli import export_command, triton_app
from bionemo_lite.triton.client import TritonClient
from bionemo_lite.triton.config import DynamicBatching, ModelConfig, TensorSpec, read_parameters
from bionemo_lite.triton.export import export_model
from bionemo_lite.triton.launch import ENV_BINARY, TritonServer, find_tritonserver, required_backends
from triton_fixtures import NAME, SEQUENCES, max_abs_diff

ONNX_TOLERANCE = 1e-4


def _cli() -> typer.Typer:
    """The export command mounted the way ``bionemo_lite.cli`` mounts it."""
    app = typer.Typer()
    app.command("export")(export_command)
    app.add_typer(triton_app, name="triton")
    return app


def test_config_text_round_trips_parameters():
    config = ModelConfig(
        "m", (TensorSpec("sequences", "TYPE_STRING", (1,)),), (TensorSpec("embeddings", "TYPE_FP32", (-1, -1)),),
        backend="python", max_batch_size=8, dynamic_batching=DynamicBatching((4, 8), 100),
        instance_kind="KIND_GPU", instance_count=2, parameters={"weights": 'a "quoted" path', "layers": "[1, 2]"},
    ).render()
    assert 'backend: "python"' in config and "max_batch_size: 8" in config
    assert "preferred_batch_size: [ 4, 8 ]" in config and "max_queue_delay_microseconds: 100" in config
    assert "instance_group [ { kind: KIND_GPU count: 2 } ]" in config
    assert read_parameters(config) == {"weights": 'a "quoted" path', "layers": "[1, 2]"}


def test_export_python_repository(tmp_path, esm2_fair_checkpoint):
    result = CliRunner().invoke(_cli(), [
        "export", NAME, "--repository", str(tmp_path / "repo"), "--weights", str(esm2_fair_checkpoint),
        "--kind", "gpu", "--instances", "2", "--max-batch-size", "32", "--max-queue-delay-us", "500",
        "--preferred-batch-size", "8", "--preferred-batch-size", "32",
    ])
    assert result.exit_code == 0, result.output
    repo = tmp_path / "repo"
    assert sorted(p.name for p in repo.iterdir()) == [NAME, f"{NAME}__generate", f"{NAME}__score"]
    embed = (repo / NAME / "config.pbtxt").read_text()
    assert "kind: KIND_GPU count: 2" in embed and "max_batch_size: 32" in embed
    assert "preferred_batch_size: [ 8, 32 ]" in embed and "max_queue_delay_microseconds: 500" in embed
    score = (repo / f"{NAME}__score" / "config.pbtxt").read_text()
    assert "max_batch_size: 0" in score and "dynamic_batching" not in score
    # One copy of the weights, shared by the verb models through relative paths.
    for verb_dir in (NAME, f"{NAME}__score", f"{NAME}__generate"):
        params = read_parameters((repo / verb_dir / "config.pbtxt").read_text())
        assert not Path(params["weights"]).is_absolute()
        assert (repo / verb_dir / "1" / params["weights"]).resolve() == (repo / NAME / "1" / "weights" / f"{NAME}.pt")
        assert (repo / verb_dir / "1" / "model.py").is_file()
    report = json.loads((repo / NAME / "export_report.json").read_text())
    assert report["triton_models"]["score"] == f"{NAME}__score" and report["settings"]["kind"] == "gpu"


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"preferred_batch_sizes": [128]}, InvalidInputError),
        ({"max_batch_size": 0}, InvalidInputError),
        ({"kind": "tpu"}, InvalidInputError),
        ({"format": "tensorrt"}, InvalidInputError),
        ({"verbs": ["fold"]}, UnsupportedVerbError),
        ({"format": "onnx", "verbs": ["score"]}, UnsupportedVerbError),
    ],
)
def test_export_refuses_bad_settings(tmp_path, esm2_fair_checkpoint, kwargs, error):
    with pytest.raises(error):
        export_model(NAME, tmp_path / "repo", weights=esm2_fair_checkpoint, **kwargs)
    assert not (tmp_path / "repo" / NAME).exists()


def test_export_command_errors_are_one_line(tmp_path, esm2_fair_checkpoint):
    result = CliRunner().invoke(_cli(), ["export", NAME, "--repository", str(tmp_path / "repo")])
    assert result.exit_code == 1
    assert "esm2_t6_8M_UR50D.pt" in result.output and "not found" in result.output
    result = CliRunner().invoke(_cli(), ["export", NAME, "--repository", str(tmp_path / "repo"),
                                         "--weights", str(esm2_fair_checkpoint), "--kind", "tpu"])
    assert result.exit_code == 1 and "kind must be 'cpu' or 'gpu'" in result.output
    assert "Traceback" not in result.output


def test_onnx_needs_an_encoder_export(tmp_path):
    from server_fixtures import register_toys, write_toy_weights

    register_toys()
    weights = write_toy_weights(tmp_path / "toy.npz")
    with pytest.raises(UnsupportedVerbError, match="export to ONNX"):
        export_model("toy_encoder", tmp_path / "repo", weights=weights, format="onnx")


def test_no_binary_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_BINARY, raising=False)
    with pytest.raises(BackendUnavailableError) as info:
        find_tritonserver(search_path=str(tmp_path), use_wheel=False)
    message = str(info.value)
    assert "no tritonserver binary found" in message and "pip install 'bionemo-lite[triton]'" in message
    assert "nvcr.io/nvidia/tritonserver" in message
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.setenv(ENV_BINARY, str(tmp_path / "missing" / "tritonserver"))
    result = CliRunner().invoke(_cli(), ["triton", "serve", "--repository", str(repo), "--http-port", "18000"])
    assert result.exit_code == 1
    assert "is not an executable file" in result.output and "Traceback" not in result.output


def test_status_of_nothing_is_an_error():
    from bionemo_lite.triton.launch import free_port

    result = CliRunner().invoke(_cli(), ["triton", "status", "--url", f"127.0.0.1:{free_port()}"])
    assert result.exit_code == 1 and "no Triton server answers" in result.output


def test_server_that_cannot_start_shows_its_log(tmp_path):
    bad = tmp_path / "repo" / "broken"
    (bad / "1").mkdir(parents=True)
    (bad / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\nmax_batch_size: not-a-number\n')
    with pytest.raises(BionemoLiteError) as info:
        TritonServer(tmp_path / "repo", log_path=tmp_path / "triton.log", startup_timeout=60).start()
    assert "exited with code" in str(info.value) and "broken" in str(info.value)


@pytest.mark.slow  # ~15 s: ONNX export + a tritonserver start
def test_onnx_export_matches_torch_and_serves(tmp_path, esm2_fair_checkpoint):
    report = export_model(NAME, tmp_path / "repo", weights=esm2_fair_checkpoint, format="onnx",
                          onnx_runtime="embedded", num_threads=1)
    print(f"ONNX vs torch in onnxruntime: max abs diff {report.onnx['max_abs_diff']:.2e} over {report.onnx['per_shape']}")
    assert report.onnx["max_abs_diff"] <= ONNX_TOLERANCE
    assert len(report.onnx["per_shape"]) >= 4 and max(len(s["lengths"]) for s in report.onnx["per_shape"]) >= 8
    version = tmp_path / "repo" / NAME / "1"
    assert (version / "model.onnx").is_file() and (version / "tokenizer.json").is_file()
    params = read_parameters((tmp_path / "repo" / NAME / "config.pbtxt").read_text())
    assert params["runtime"] == "onnxruntime" and float(params["onnx_max_abs_diff"]) <= ONNX_TOLERANCE

    model = bionemo_lite.load(NAME, weights=esm2_fair_checkpoint)
    with TritonServer(tmp_path / "repo", log_path=tmp_path / "triton.log") as server:
        with TritonClient(server.http_url) as client:
            for pooling in ("mean", "per_residue", "bos"):
                served = client.embed(NAME, SEQUENCES, pooling=pooling)
                diff = max_abs_diff(served, model.embed(SEQUENCES, pooling=pooling))
                print(f"Triton (ONNX graph) vs in-process torch, {pooling}: max abs diff {diff:.2e}")
                assert diff <= ONNX_TOLERANCE
            with pytest.raises(InvalidInputError, match="ONNX export holds layer"):
                client.embed(NAME, SEQUENCES, layer=0)
            with pytest.raises(InvalidInputError) as info:
                client.embed(NAME, {"ok": "MKT", "bad": "MK1"})
            assert info.value.record == "bad" and info.value.position == 3


@pytest.mark.slow  # ONNX export (~5 s)
def test_onnx_for_tritons_onnxruntime_backend(tmp_path, esm2_fair_checkpoint):
    """The graph as a standard Triton ONNX model; servable where the onnxruntime backend exists."""
    export_model(NAME, tmp_path / "repo", weights=esm2_fair_checkpoint, format="onnx", onnx_runtime="triton")
    graph = tmp_path / "repo" / f"{NAME}__onnx"
    config = (graph / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and (graph / "1" / "model.onnx").is_file()
    assert 'name: "tokens" data_type: TYPE_INT64 dims: [ -1 ]' in config
    assert required_backends(tmp_path / "repo") == {NAME: "python", f"{NAME}__onnx": "onnxruntime"}
    installation = find_tritonserver()
    if "onnxruntime" in (installation.available_backends() or set()):
        model = bionemo_lite.load(NAME, weights=esm2_fair_checkpoint)
        with TritonServer(tmp_path / "repo", log_path=tmp_path / "triton.log") as server:
            with TritonClient(server.http_url) as client:
                diff = max_abs_diff(client.embed(NAME, SEQUENCES), model.embed(SEQUENCES))
                assert diff <= ONNX_TOLERANCE
    else:  # the nvidia-pytriton wheel ships only the python backend: refused up front, with the way out
        with pytest.raises(BackendUnavailableError, match="onnxruntime.*--onnx-runtime embedded"):
            TritonServer(tmp_path / "repo", installation=installation).start()


def test_error_messages_rebuild_the_callers_exception():
    """The error text a Triton model sends is turned back into the caller's exception with the caller's id."""
    from bionemo_lite.triton.protocol import decode_error, encode_error

    message = encode_error(InvalidInputError("invalid residue 'J'", record="1", position=4))
    rebuilt = decode_error(f"[StatusCode.INTERNAL] {message}", ids=["first", "second"])
    assert isinstance(rebuilt, InvalidInputError)
    assert (rebuilt.record, rebuilt.position, rebuilt.reason) == ("second", 4, "invalid residue 'J'")
    assert decode_error("some other failure") is None


@pytest.mark.parametrize("command", [["export"], ["triton", "export"]])
def test_export_of_a_garbage_checkpoint_is_refused_before_anything_is_written(tmp_path, command):
    garbage = tmp_path / f"{NAME}.pt"
    garbage.write_bytes(b"this is not a checkpoint\n" * 100)
    repo = tmp_path / "repo"
    result = CliRunner().invoke(_cli(), [*command, NAME, "--repository", str(repo), "--weights", str(garbage)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and str(garbage) in result.output
    assert "Traceback" not in result.output
    assert not repo.exists()  # no repository that looks servable


def test_triton_serve_defaults_do_not_clash_with_the_api():
    from typer.main import get_command

    from bionemo_lite.server.settings import Settings

    params = {p.name: p.default for p in get_command(triton_app).commands["serve"].params}
    triton_ports = {params["http_port"], params["grpc_port"], params["metrics_port"]}
    assert len(triton_ports) == 3 and Settings().port not in triton_ports
    status = {p.name: p.default for p in get_command(triton_app).commands["status"].params}
    assert status["url"] == f"127.0.0.1:{params['http_port']}"  # status looks where serve listens


def test_a_taken_port_is_named_with_its_owner_before_triton_starts(tmp_path, monkeypatch):
    import os
    import socket

    from bionemo_lite.triton.launch import free_port

    fake = tmp_path / "tritonserver"  # would leave a marker if it were started
    fake.write_text(f"#!/bin/sh\ntouch {tmp_path / 'started'}\nsleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv(ENV_BINARY, str(fake))
    repo = tmp_path / "repo"
    repo.mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        result = CliRunner().invoke(_cli(), [
            "triton", "serve", "--repository", str(repo), "--http-port", str(free_port()),
            "--grpc-port", str(taken), "--metrics-port", str(free_port()), "--log-file", str(tmp_path / "t.log")])
    assert result.exit_code == 1, result.output
    assert f"gRPC (--grpc-port) port {taken} on 127.0.0.1 is taken by pid {os.getpid()} (" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "started").exists() and not (tmp_path / "t.log").exists()
    same = CliRunner().invoke(_cli(), ["triton", "serve", "--repository", str(repo), "--http-port", "18123",
                                       "--grpc-port", "18123"])
    assert same.exit_code == 1 and "ports are both 18123" in same.output


def test_export_numerics_reach_the_served_model_and_are_checked(tmp_path, esm2_fair_checkpoint):
    repo = tmp_path / "repo"
    result = CliRunner().invoke(_cli(), ["export", NAME, "--repository", str(repo), "--weights",
                                         str(esm2_fair_checkpoint), "--verb", "embed", "--numerics", "reference"])
    assert result.exit_code == 0, result.output
    assert read_parameters((repo / NAME / "config.pbtxt").read_text())["numerics"] == "reference"
    bad = CliRunner().invoke(_cli(), ["export", NAME, "--repository", str(tmp_path / "other"), "--weights",
                                      str(esm2_fair_checkpoint), "--numerics", "exact"])
    assert bad.exit_code == 1 and "numerics must be one of fast, reference" in bad.output
    assert not (tmp_path / "other").exists()
