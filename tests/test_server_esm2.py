"""ESM-2 end to end over HTTP: a real uvicorn process serving tiny random weights in the
official fair-esm layout, checked number for number against the Python API.

The tests share one server and run in file order: the first model request of
the module is the concurrent one, so it really is a first load.
"""

from __future__ import annotations

import numpy as np
import pytest

import bionemo_lite
from server_fixtures import parallel_posts, serve_cli

NAME = "esm2_t6_8M_UR50D"
SEQS = [
    {"id": "p1", "sequence": "MKTAYIAKQRQISFVKSHFSRQ"},
    {"id": "p2", "sequence": "GSHMLEDPVDAF"},
    {"id": "p3", "sequence": "MA"},
]
PAIRS = [(s["id"], s["sequence"]) for s in SEQS]


@pytest.fixture(scope="module")
def server(tmp_path_factory, esm2_fair_checkpoint):
    # Started the way users start it: `bionemo-lite serve --weights NAME=PATH`.
    with serve_cli(tmp_path_factory.mktemp("esm2server"), "--weights", f"{NAME}={esm2_fair_checkpoint}") as srv:
        yield srv


@pytest.fixture(scope="module")
def model(esm2_fair_checkpoint):
    return bionemo_lite.load(NAME, weights=esm2_fair_checkpoint)


def test_models_listing(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert models[NAME]["weights_available"] is True and models[NAME]["loaded"] is False
    assert models[NAME]["family"] == "esm2" and {"embed", "score", "generate"} <= set(models[NAME]["verbs"])
    assert models["esm2_t12_35M_UR50D"]["weights_available"] is False


@pytest.mark.slow  # ~10 s: the first load imports torch and the plugin
def test_concurrent_first_requests_load_once(client, server):
    assert client.get(f"/v1/models/{NAME}").json()["loaded"] is False  # really the first load
    bodies = [{"sequences": [SEQS[i % 3]], "pooling": "mean"} for i in range(16)]
    responses = parallel_posts(server.base_url, f"/v1/models/{NAME}/embed", bodies)
    assert [r.status_code for r in responses] == [200] * 16, [r.text for r in responses if r.status_code != 200]
    # The same record gives the same vector whichever request carried it.
    for i, r in enumerate(responses):
        assert r.json()["embeddings"] == responses[i % 3].json()["embeddings"]
    entry = client.get(f"/v1/models/{NAME}").json()
    assert entry["loaded"] is True and entry["loads"] == 1


@pytest.mark.parametrize("pooling", ["mean", "bos", "per_residue"])
def test_embed_equals_python(client, model, pooling):
    r = client.post(f"/v1/models/{NAME}/embed", json={"sequences": SEQS, "pooling": pooling})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = model.embed(PAIRS, pooling=pooling)
    assert body["model"] == NAME and body["ids"] == ["p1", "p2", "p3"]
    assert body["dim"] == expected.dim and body["layer"] == expected.layers[0] and body["truncated"] == []
    if pooling == "per_residue":
        assert [len(e) for e in body["embeddings"]] == [22, 12, 2]
        for got, want in zip(body["embeddings"], expected.embeddings):
            np.testing.assert_allclose(np.array(got), want, atol=1e-6, rtol=0)
    else:
        np.testing.assert_allclose(np.array(body["embeddings"]), expected.embeddings, atol=1e-6, rtol=0)


def test_embed_several_layers(client, model):
    r = client.post(f"/v1/models/{NAME}/embed", json={"sequences": SEQS, "layer": [0, -1]})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = model.embed(PAIRS, layer=[0, -1])
    assert body["layers"] == list(expected.layers)
    for layer in expected.layers:
        np.testing.assert_allclose(np.array(body["by_layer"][str(layer)]), expected.by_layer[layer],
                                   atol=1e-6, rtol=0)


def test_score_pll_equals_python(client, model):
    r = client.post(f"/v1/models/{NAME}/score", json={"sequences": SEQS, "method": "pll"})
    assert r.status_code == 200, r.text
    expected = model.score(PAIRS, method="pll")
    assert r.json()["ids"] == ["p1", "p2", "p3"] and r.json()["method"] == "pll"
    np.testing.assert_allclose(r.json()["scores"], expected.scores, atol=1e-5, rtol=0)


def test_score_masked_marginals_equals_python(client, model):
    wild_type = SEQS[0]["sequence"]
    mutations = ["M1A", "K2R", "T3G:A4C"]
    r = client.post(f"/v1/models/{NAME}/score",
                    json={"sequences": [wild_type], "method": "masked_marginals", "mutations": mutations})
    assert r.status_code == 200, r.text
    expected = model.score([wild_type], method="masked_marginals", mutations=mutations)
    assert r.json()["mutations"] == mutations and len(r.json()["scores"]) == 3
    np.testing.assert_allclose(r.json()["scores"], expected.scores, atol=1e-5, rtol=0)
    bad = client.post(f"/v1/models/{NAME}/score",
                      json={"sequences": [wild_type], "method": "masked_marginals", "mutations": ["G1A"]})
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_input"


def test_mutations_are_read_by_the_core_parser(client, model):
    wild_type = SEQS[0]["sequence"]
    body = {"sequences": [{"id": "wt", "sequence": wild_type}], "method": "wt_marginals"}
    r = client.post(f"/v1/models/{NAME}/score", json={**body, "mutations": ["m1a", "k2r:T3g"]})
    assert r.status_code == 200, r.text
    expected = model.score({"wt": wild_type}, method="wt_marginals", mutations=["M1A", "K2R:T3G"])
    assert r.json()["mutations"] == ["M1A", "K2R:T3G"]
    np.testing.assert_allclose(r.json()["scores"], expected.scores, atol=1e-5, rtol=0)
    for mutations in (["K2R", "k2r"], ["M1A", "K2"], ["M1A", "Q2R"]):
        with pytest.raises(bionemo_lite.InvalidInputError) as err:
            model.score({"wt": wild_type}, method="wt_marginals", mutations=mutations)
        bad = client.post(f"/v1/models/{NAME}/score", json={**body, "mutations": mutations})
        assert bad.status_code == 422, bad.text
        assert (bad.json()["record"], bad.json()["position"], bad.json()["reason"]) == (
            mutations[1], err.value.position, err.value.reason)


def test_generate_equals_python(client, model):
    request = {"sequences": ["MKT<mask>YIA<mask>QR"], "num_samples": 2, "temperature": 1.0, "top_k": 5, "seed": 3}
    r = client.post(f"/v1/models/{NAME}/generate", json=request)
    assert r.status_code == 200, r.text
    gen = r.json()["generated"][0]
    expected = model.generate(["MKT<mask>YIA<mask>QR"], num_samples=2, temperature=1.0, top_k=5, seed=3)
    assert gen["generated"] == expected.records[0].generated
    assert all(len(s) == 10 and "<mask>" not in s for s in gen["generated"])


def test_unknown_model_and_missing_weights(client):
    r = client.post("/v1/models/esm2_t6_8M/embed", json={"sequences": ["MKT"]})
    assert r.status_code == 404 and NAME in r.json()["close_matches"]
    r = client.post("/v1/models/esm2_t12_35M_UR50D/embed", json={"sequences": ["MKT"]})
    assert r.status_code == 503
    assert r.json()["error"] == "weights_not_found" and "weights pull esm2_t12_35M_UR50D" in r.json()["detail"]


def test_invalid_input(client):
    r = client.post(f"/v1/models/{NAME}/embed", json={"sequences": [{"id": "x", "sequence": "MKT*A"}]})
    assert r.status_code == 422 and (r.json()["record"], r.json()["position"]) == ("x", 4)
    r = client.post(f"/v1/models/{NAME}/embed", json={"sequences": ["MKT"] * 33})
    assert r.status_code == 422 and "at most 32" in r.json()["detail"]


def test_too_long_then_truncate(client, model):
    long = "MKTAYIAKQR" * 103  # 1030 residues > 1022
    r = client.post(f"/v1/models/{NAME}/embed", json={"sequences": [{"id": "long", "sequence": long}]})
    assert r.status_code == 422 and r.json()["record"] == "long" and "1022" in r.json()["reason"]
    r = client.post(f"/v1/models/{NAME}/embed",
                    json={"sequences": [{"id": "long", "sequence": long}, SEQS[2]], "truncate": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["truncated"] == ["long"] and body["lengths"] == [1022, 2]
    expected = model.embed([("long", long), PAIRS[2]], on_too_long="truncate")
    np.testing.assert_allclose(np.array(body["embeddings"]), expected.embeddings, atol=1e-6, rtol=0)


def test_embed_include_hiddens_gives_padded_states_and_mask(client, model):
    r = client.post(f"/v1/models/{NAME}/embed", json={"sequences": SEQS, "layer": [2, -1], "include_hiddens": True})
    assert r.status_code == 200, r.text
    body = r.json()
    hiddens, mask = np.array(body["hiddens"], dtype=np.float32), np.array(body["mask"])
    assert hiddens.shape == (3, 22, model.embed(PAIRS).dim) and mask.sum(1).tolist() == [22, 12, 2]
    per_residue = model.embed(PAIRS, layer=2, pooling="per_residue").embeddings  # the first requested layer
    for h, m, want in zip(hiddens, mask, per_residue):
        np.testing.assert_allclose(h[m], want, atol=1e-6, rtol=0)
        assert not h[~m].any()  # padding is zeros
    plain = client.post(f"/v1/models/{NAME}/embed", json={"sequences": SEQS}).json()
    assert "hiddens" not in plain and "mask" not in plain  # only on request: they are large


def test_generate_options_are_refused_before_sampling(client):
    seed = {"sequences": ["MKT<mask>YIA<mask>QR"], "seed": 1}
    tiny = client.post(f"/v1/models/{NAME}/generate", json={**seed, "temperature": 1e-40})  # overflowed: a 500
    assert tiny.status_code == 422 and "temperature" in tiny.json()["detail"] and "0.001" in tiny.json()["detail"]
    order = client.post(f"/v1/models/{NAME}/generate", json={**seed, "order": 1})
    assert order.status_code == 422 and "option 'order'" in order.json()["detail"], order.text
    unknown = client.post(f"/v1/models/{NAME}/generate", json={**seed, "ordre": None})
    assert unknown.status_code == 422 and "ordre" in unknown.json()["detail"]
    ok = client.post(f"/v1/models/{NAME}/generate", json={**seed, "temperature": 0.001, "order": "left_to_right"})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("fmt", ["npz", "h5"])
def test_per_residue_embeddings_as_a_file_equal_the_json(client, model, fmt):
    import io

    import h5py

    request = {"sequences": SEQS, "pooling": "per_residue"}
    as_json = client.post(f"/v1/models/{NAME}/embed", json=request)
    as_file = client.post(f"/v1/models/{NAME}/embed", json={**request, "format": fmt})
    media = {"npz": "application/x-npz", "h5": "application/x-hdf5"}[fmt]
    assert as_file.status_code == 200 and as_file.headers["content-type"] == media
    if fmt == "npz":
        data = np.load(io.BytesIO(as_file.content), allow_pickle=False)
        ids, arrays = list(data["ids"]), [data[f"embeddings/{i}"] for i in range(len(SEQS))]
    else:
        with h5py.File(io.BytesIO(as_file.content), "r") as h5:
            ids, arrays = list(h5["ids"].asstr()), [h5[f"embeddings/{i}"][()] for i in range(len(SEQS))]
    assert ids == as_json.json()["ids"] == ["p1", "p2", "p3"]
    expected = model.embed(PAIRS, pooling="per_residue").embeddings
    for got, rows, want in zip(arrays, as_json.json()["embeddings"], expected):
        np.testing.assert_array_equal(got, np.asarray(rows, np.float32))  # the same float32 values as the JSON
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    residues, dim = sum(len(s["sequence"]) for s in SEQS), model.embed(PAIRS).dim
    print(f"\nESM-2 per-residue embeddings ({residues} x {dim} float32): JSON {len(as_json.content)} B, "
          f"{fmt} {len(as_file.content)} B")
