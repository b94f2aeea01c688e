"""Micro-batching of concurrent embed requests: a real uvicorn process serving tiny random ESM-2
weights, every answer checked against the Python API on the request's own records.

The first test warms the model up so the merging measured afterwards is that of a
loaded model, not of requests piling up behind the first load.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import bionemo_lite
from bionemo_lite.errors import InvalidInputError
from bionemo_lite.records import Record
from bionemo_lite.merging import merge_records
from bionemo_lite.server.backends.batcher import run_group
from bionemo_lite.server.backends.base import embeddings_to_json
from bionemo_lite.server.backends.inprocess import InProcessProvider
from bionemo_lite.server.schemas import EmbedRequest
from bionemo_lite.server.settings import Settings
from server_fixtures import parallel_posts, serve_cli

NAME = "esm2_t6_8M_UR50D"
PATH = f"/v1/models/{NAME}/embed"
AMINO = "ACDEFGHIKLMNPQRSTVWY"
# The Python API itself gives a record's vector up to ~2.5e-6 apart depending on the records batched with it
# (float32 rounding of different matmul shapes; measured on these weights); mixing up records would be O(1).
TOL = 1e-5


@pytest.fixture(scope="module")
def server(tmp_path_factory, esm2_fair_checkpoint):
    with serve_cli(tmp_path_factory.mktemp("batchserver"), "--weights", f"{NAME}={esm2_fair_checkpoint}") as srv:
        yield srv


@pytest.fixture(scope="module")
def model(esm2_fair_checkpoint):
    return bionemo_lite.load(NAME, weights=esm2_fair_checkpoint)


def counters(client) -> tuple[int, int]:
    entry = client.get(f"/v1/models/{NAME}").json()
    return entry["batched_calls"], entry["batched_requests"]


def random_protein(rng: np.random.Generator, length: int) -> str:
    return "".join(rng.choice(list(AMINO), size=length))


def as_pairs(body: dict) -> list[tuple[str, str]]:
    """The request's records as the Python API is given them (plain strings get their index as id)."""
    return [(s["id"], s["sequence"]) if isinstance(s, dict) else (str(i), s) for i, s in enumerate(body["sequences"])]


def assert_same_as_python(body: dict, got: dict, model) -> None:
    expected = model.embed(as_pairs(body), pooling=body.get("pooling", "mean"),
                           on_too_long="truncate" if body.get("truncate") else "error")
    assert got["ids"] == expected.ids and got["lengths"] == expected.lengths
    assert got["truncated"] == expected.truncated and got["errors"] == []
    assert got["pooling"] == expected.pooling and got["layers"] == list(expected.layers)
    if expected.pooling == "per_residue":
        assert len(got["embeddings"]) == len(expected.embeddings)
        for g, want in zip(got["embeddings"], expected.embeddings):
            np.testing.assert_allclose(np.array(g), want, atol=TOL, rtol=0)
    else:
        np.testing.assert_allclose(np.array(got["embeddings"]), expected.embeddings, atol=TOL, rtol=0)


@pytest.mark.slow  # the first load imports torch and the plugin
def test_warm_up(client):
    r = client.post(PATH, json={"sequences": ["MKTAYIAKQR"]})
    assert r.status_code == 200, r.text
    assert counters(client) == (1, 1)


def test_concurrent_requests_are_merged_and_split_back(client, server, model):
    rng = np.random.default_rng(0)
    bodies = []
    for i in range(32):
        seqs = [random_protein(rng, int(rng.integers(3, 60))) for _ in range(1 + i % 4)]
        if i % 2:  # ids "0", "1", ... collide across requests
            sequences: list = seqs
        else:
            sequences = [{"id": str(j), "sequence": s} for j, s in enumerate(seqs)]
        bodies.append({"sequences": sequences, "pooling": "mean"})
    calls0, requests0 = counters(client)
    responses = parallel_posts(server.base_url, PATH, bodies)
    assert [r.status_code for r in responses] == [200] * 32, [r.text for r in responses if r.status_code != 200]
    for body, r in zip(bodies, responses):
        assert_same_as_python(body, r.json(), model)
    calls, requests = counters(client)
    calls, requests = calls - calls0, requests - requests0
    assert requests == 32 and 1 <= calls < 32
    print(f"mean merged requests per model call: {requests / calls:.2f} ({requests} requests, {calls} calls)")


def test_truncated_ids_are_given_back_per_request(client, server, model):
    rng = np.random.default_rng(1)
    bodies = [{"sequences": [{"id": "0", "sequence": random_protein(rng, 1030 if i % 2 else 40)},
                             {"id": "1", "sequence": random_protein(rng, 10 + i)}],
               "pooling": "bos", "truncate": True} for i in range(6)]
    responses = parallel_posts(server.base_url, PATH, bodies)
    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses if r.status_code != 200]
    for i, (body, r) in enumerate(zip(bodies, responses)):
        assert r.json()["truncated"] == (["0"] if i % 2 else [])
        assert_same_as_python(body, r.json(), model)


def test_invalid_request_fails_alone(client, server, model):
    good = [{"sequences": ["MKTAYIAKQR", "GSHM"], "pooling": "mean"} for _ in range(7)]
    bad = {"sequences": ["MKTAYIAKQR", {"id": "broken", "sequence": "MKT*A"}], "pooling": "mean"}
    bodies = good[:3] + [bad] + good[3:]
    responses = parallel_posts(server.base_url, PATH, bodies)
    assert [r.status_code for r in responses] == [200] * 3 + [422] + [200] * 4
    assert (responses[3].json()["record"], responses[3].json()["position"]) == ("broken", 4)
    for body, r in zip(bodies, responses):
        if body is not bad:
            assert_same_as_python(body, r.json(), model)


def test_different_poolings_are_not_merged(client, server, model):
    poolings = ["mean", "bos", "per_residue"]
    bodies = [{"sequences": [{"id": "0", "sequence": "MKTAYIAKQRQ"[: 4 + i]}], "pooling": poolings[i % 3]}
              for i in range(12)]
    calls0, requests0 = counters(client)
    responses = parallel_posts(server.base_url, PATH, bodies)
    assert [r.status_code for r in responses] == [200] * 12, [r.text for r in responses if r.status_code != 200]
    for body, r in zip(bodies, responses):
        assert_same_as_python(body, r.json(), model)
    calls, requests = counters(client)
    assert requests - requests0 == 12 and calls - calls0 >= 3  # at least one call per pooling


def test_model_side_invalid_input_falls_back_to_one_call_per_request(model):
    """A record the model refuses inside a merged call: only its request gets the error."""
    requests = [[Record("0", "MKTAYIAKQR", 0)], [Record("0", "MK", 0), Record("x", "MKT*A", 1)],
                [Record("0", "GSHMLE", 0)]]
    with pytest.raises(InvalidInputError):  # the merged call itself is refused
        model.embed(merge_records(requests))
    outcomes, calls = run_group(model.embed, embeddings_to_json, requests)
    assert calls == 3
    assert isinstance(outcomes[1], InvalidInputError) and outcomes[1].record == "x"
    for records, outcome in ((requests[0], outcomes[0]), (requests[2], outcomes[2])):
        expected = model.embed([(r.id, r.sequence) for r in records])
        assert outcome["ids"] == ["0"]
        np.testing.assert_allclose(np.array(outcome["embeddings"]), expected.embeddings, atol=TOL, rtol=0)


def test_zero_window_keeps_one_call_per_request(esm2_fair_checkpoint, model):
    """``batch_window_ms=0``: concurrent requests each get their own model call."""
    settings = Settings(weights={NAME: str(esm2_fair_checkpoint)}, batch_window_ms=0, workers=2)
    bodies = [{"sequences": [{"id": "0", "sequence": "MKTAYIAKQR"[: 3 + i]}]} for i in range(8)]

    async def main() -> tuple[list[dict], dict]:
        provider = InProcessProvider(settings)
        try:
            await provider.start()
            requests = [EmbedRequest(**b) for b in bodies]
            results = await asyncio.gather(*(provider.embed(NAME, r.verb_options(), r.records()) for r in requests))
            return list(results), provider.model_facts(bionemo_lite.get_spec(NAME))
        finally:
            await provider.close()

    results, facts = asyncio.run(main())
    assert facts["batched_calls"] == facts["batched_requests"] == 8
    for body, got in zip(bodies, results):
        assert_same_as_python(body, got, model)
