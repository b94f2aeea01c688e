"""A real tritonserver (the nvidia-pytriton wheel's, on CPU) serving an exported repository.

One server per module, on the tiny ESM-2 checkpoint exported in the python
format (embed and score). It is compared number for number with the same
model run in-process, over HTTP and gRPC, and fronted by the real FastAPI
service (uvicorn, backend=triton) for the concurrency and restart checks.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

import bionemo_lite
from bionemo_lite.errors import BackendUnavailableError, BionemoLiteError, InvalidInputError
from bionemo_lite.triton.cli import triton_app
from bionemo_lite.triton.client import MIB, AsyncTritonClient, BatchingStats, TritonClient
from bionemo_lite.triton.export import export_model
from bionemo_lite.triton.launch import TritonServer
from server_fixtures import parallel_posts, running_server, uvicorn_factory
from triton_fixtures import NAME, SEQUENCES, max_abs_diff, move_repository, restart_on_same_ports

pytestmark = pytest.mark.slow  # every test here talks to a tritonserver started for the module

PARITY = 1e-5


@pytest.fixture(scope="module")
def repository(tmp_path_factory, esm2_fair_checkpoint):
    """Exported elsewhere, then moved: the repository must not depend on where it was written."""
    tmp = tmp_path_factory.mktemp("triton")
    report = export_model(NAME, tmp / "written", weights=esm2_fair_checkpoint, verbs=["embed", "score"],
                          max_batch_size=64, max_queue_delay_us=5000, num_threads=1)
    assert report.triton_models == {"embed": NAME, "score": f"{NAME}__score"}
    return move_repository(tmp / "written", tmp / "moved")


@pytest.fixture(scope="module")
def triton(repository, tmp_path_factory):
    holder = {"server": TritonServer(repository, log_path=tmp_path_factory.mktemp("tlog") / "triton.log").start()}
    yield holder  # tests that kill the server put the restarted one back here
    holder["server"].stop()


@pytest.fixture(scope="module")
def model(esm2_fair_checkpoint):
    return bionemo_lite.load(NAME, weights=esm2_fair_checkpoint)


@pytest.fixture(scope="module")
def http_client(triton):
    with TritonClient(triton["server"].http_url, "http") as client:
        yield client


@pytest.fixture(scope="module")
def grpc_client(triton):
    with TritonClient(triton["server"].grpc_url, "grpc") as client:
        yield client


def test_exported_repository_loads(triton, http_client, repository):
    assert http_client.ready()
    states = {m["name"]: m["state"] for m in http_client.models()}
    assert states == {NAME: "READY", f"{NAME}__score": "READY"}
    config = (repository / NAME / "config.pbtxt").read_text()
    assert 'name: "sequences" data_type: TYPE_STRING dims: [ 1 ]' in config
    assert "preferred_batch_size: [ 16, 32, 64 ]" in config and "max_queue_delay_microseconds: 5000" in config
    assert "kind: KIND_CPU count: 1" in config
    # The weights travel inside the repository, referenced relatively.
    assert (repository / NAME / "1" / "weights" / f"{NAME}.pt").is_file()
    assert (repository / NAME / "1" / "weights" / f"{NAME}-contact-regression.pt").is_file()
    assert 'string_value: "weights/esm2_t6_8M_UR50D.pt"' in config


def test_status_command_lists_models(triton):
    result = CliRunner().invoke(triton_app, ["status", "--url", triton["server"].http_url])
    assert result.exit_code == 0, result.output
    assert "ready" in result.output.splitlines()[0]
    assert re.search(rf"^{NAME}\s+1\s+READY", result.output, re.M)
    assert re.search(rf"^{NAME}__score\s+1\s+READY", result.output, re.M)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("pooling,layer", [("mean", -1), ("per_residue", -1), ("bos", 0), ("mean", [0, 2, -1])])
def test_triton_matches_inprocess(protocol, pooling, layer, model, http_client, grpc_client):
    client = http_client if protocol == "http" else grpc_client
    served = client.embed(NAME, SEQUENCES, layer=layer, pooling=pooling)
    local = model.embed(SEQUENCES, layer=layer, pooling=pooling)
    diff = max_abs_diff(served, local)
    print(f"in-process vs Triton ({protocol}, {pooling}, layer {layer}): max abs diff {diff:.2e}")
    assert diff <= PARITY
    assert served.ids == list(SEQUENCES) and served.errors == []
    assert served.dim == local.dim == model.config["embed_dim"]


def test_truncation_and_length_errors(http_client):
    long = {"long": "MKTAYIAKQR" * 103, "short": "GSHMLE"}  # 1030 residues > 1022
    served = http_client.embed(NAME, long, pooling="mean", on_too_long="truncate")
    assert served.truncated == ["long"] and served.lengths == [1022, 6] and served.ids == ["long", "short"]
    with pytest.raises(InvalidInputError) as info:
        http_client.embed(NAME, long)
    assert info.value.record == "long" and "1030 residues" in info.value.reason


def test_bad_record_fails_only_its_own_request(triton):
    """Requests batched into one execute: the invalid one gets its error, the others their answers."""

    async def run() -> list:
        client = AsyncTritonClient(triton["server"].http_url, "http")
        try:
            bodies = [{f"r{i}": seq} for i, seq in enumerate(SEQUENCES.values())]
            bodies.insert(2, {"good": "MKT", "bad": "MKTJAYI"})
            return await asyncio.gather(*(client.embed(NAME, b) for b in bodies), return_exceptions=True)
        finally:
            await client.close()

    results = asyncio.run(run())
    bad = results.pop(2)
    assert isinstance(bad, InvalidInputError) and bad.record == "bad" and bad.position == 4 and "'J'" in bad.reason
    assert all(not isinstance(r, BaseException) and len(r.ids) == 1 for r in results), results


def test_score_through_triton(http_client, model):
    served = http_client.score(NAME, {"a": SEQUENCES["p1"], "b": SEQUENCES["p2"]}, method="pll")
    local = model.score({"a": SEQUENCES["p1"], "b": SEQUENCES["p2"]}, method="pll")
    assert served.ids == ["a", "b"] and served.method == "pll"
    np.testing.assert_allclose(served.scores, local.scores, rtol=1e-5)
    muts = ["K2A", "T3G:A4C"]
    served = http_client.score(NAME, {"wt": SEQUENCES["p1"]}, method="masked_marginals", mutations=muts)
    local = model.score({"wt": SEQUENCES["p1"]}, method="masked_marginals", mutations=muts)
    assert served.mutations == muts
    np.testing.assert_allclose(served.scores, local.scores, rtol=1e-5, atol=1e-6)
    with pytest.raises(InvalidInputError, match="mutation|K99A|position"):
        http_client.score(NAME, {"wt": SEQUENCES["p1"]}, method="masked_marginals", mutations=["K99A"])
    with pytest.raises(InvalidInputError, match="does not accept the option"):
        http_client.score(NAME, ["MKT"], method="pll", temperature=2.0)


def test_grpc_response_over_4mb(triton, grpc_client, model):
    rng = np.random.default_rng(0)
    residues = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    seqs = {f"s{i}": "".join(rng.choice(residues, 300)) for i in range(32)}
    layers = [1, 2, 3]  # three per-residue layers: 32 x 300 x 3 x 48 float32 = 5.5 MB
    served = grpc_client.embed(NAME, seqs, layer=layers, pooling="per_residue")
    payload = sum(a.nbytes for layer in served.layers for a in served.by_layer[layer])
    assert payload > 4 * MIB, payload
    assert served.lengths == [300] * 32 and served.layers == (1, 2, 3)
    local = model.embed(dict(list(seqs.items())[:2]), layer=layers, pooling="per_residue")
    for layer in layers:
        for got, want in zip(served.by_layer[layer][:2], local.by_layer[layer]):
            assert np.abs(got - want).max() <= PARITY
    # The same answer does not fit gRPC's usual 4 MB limit: the raised client limit is what makes it pass.
    with TritonClient(triton["server"].grpc_url, "grpc", max_message_bytes=4 * MIB) as small:
        with pytest.raises(BionemoLiteError, match="message limit"):
            small.embed(NAME, seqs, layer=layers, pooling="per_residue")


def settled_batching(client: TritonClient, name: str) -> BatchingStats:
    """Triton updates a model's statistics just after answering: read them once they stop moving."""
    previous = client.batching(name)
    while True:
        time.sleep(1.0)
        current = client.batching(name)
        if current == previous:
            return current
        previous = current


def test_api_batches_through_triton_and_survives_a_restart(triton, model, tmp_path):
    """64 concurrent API requests are all answered and batched by Triton; Triton killed -> 503; back -> 200.

    The API is given two replicas, one of which never answers: requests go to the live one.
    """
    from bionemo_lite.triton.launch import free_port

    server = triton["server"]
    env = {"BIONEMO_LITE_BACKEND": "triton", "BIONEMO_LITE_TRITON_URL": f"127.0.0.1:{free_port()},{server.grpc_url}",
           "BIONEMO_LITE_TRITON_PROTOCOL": "grpc", "BIONEMO_LITE_LOG_LEVEL": "warning"}
    items = list(SEQUENCES.items())
    bodies = [{"sequences": [{"id": f"q{i}", "sequence": items[i % len(items)][1][: 6 + i % 20]}], "pooling": "mean"}
              for i in range(64)]
    with TritonClient(server.http_url) as stats_client:
        before = settled_batching(stats_client, NAME)
        with running_server(uvicorn_factory("bionemo_lite.server.app:create_app"), env, tmp_path / "api") as api:
            listed = {m["name"]: m for m in httpx.get(f"{api.base_url}/v1/models", timeout=30).json()["models"]}
            assert listed[NAME]["loaded"] is True and listed[NAME]["triton_verbs"] == ["embed", "score"]
            responses = parallel_posts(api.base_url, f"/v1/models/{NAME}/embed", bodies)
            assert [r.status_code for r in responses] == [200] * 64, [r.text for r in responses if r.status_code != 200]
            for body, response in zip(bodies[:5], responses[:5]):
                record = body["sequences"][0]
                local = model.embed({record["id"]: record["sequence"]}, pooling="mean")
                got = response.json()
                assert got["ids"] == [record["id"]] and got["model"] == NAME and got["pooling"] == "mean"
                assert np.abs(np.asarray(got["embeddings"]) - local.embeddings).max() <= PARITY
            after = settled_batching(stats_client, NAME)
            inferences = after.inference_count - before.inference_count
            executions = after.execution_count - before.execution_count
            mean_batch = inferences / executions
            print(f"64 concurrent API requests: {inferences} inferences in {executions} executions, "
                  f"mean batch size {mean_batch:.1f}")
            assert inferences == 64 and mean_batch > 1

            server.kill()
            with httpx.Client(base_url=api.base_url, timeout=60) as http:
                down = http.post(f"/v1/models/{NAME}/embed", json=bodies[0])
                assert down.status_code == 503, down.text
                assert down.json()["error"] == "backend_unavailable" and "Triton" in down.json()["detail"]
                assert http.get("/v1/health/ready").status_code == 503

                triton["server"] = restart_on_same_ports(server)  # the API process is not restarted
                up = http.post(f"/v1/models/{NAME}/embed", json=bodies[0])
                assert up.status_code == 200, up.text
                again = np.asarray(up.json()["embeddings"]) - np.asarray(responses[0].json()["embeddings"])
                assert np.abs(again).max() <= PARITY
                assert http.get("/v1/health/ready").status_code == 200


def test_unreachable_server_is_backend_unavailable(triton):
    from bionemo_lite.triton.launch import free_port

    for protocol in ("http", "grpc"):
        with TritonClient(f"127.0.0.1:{free_port()}", protocol, timeout=5) as client:
            assert not client.ready()
            with pytest.raises(BackendUnavailableError, match="cannot be reached"):
                client.embed(NAME, ["MKT"])
    with TritonClient(triton["server"].http_url) as client:
        with pytest.raises(BackendUnavailableError, match="does not serve"):
            client.embed("esm2_t12_35M_UR50D", ["MKT"])
