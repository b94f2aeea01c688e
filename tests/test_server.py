"""The HTTP service through a real uvicorn process, with the toy plugin of `server_fixtures`.

Every route, limit and error answer is checked here on models whose numbers
are known exactly; ESM-2 end to end is in test_server_esm2.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

import bionemo_lite
from server_fixtures import parallel_posts, register_toys, running_server, uvicorn_factory, write_toy_weights
from bionemo_lite.server.settings import Settings

MAX_SEQUENCES = 4
MAX_BODY = 64 * 1024
TOYS_WITH_WEIGHTS = ("toy_encoder", "toy_encoder_c", "toy_folder", "toy_smiles")


@pytest.fixture(scope="module")
def toy_weights(tmp_path_factory) -> Path:
    return write_toy_weights(tmp_path_factory.mktemp("toyw") / "toy.npz")


@pytest.fixture(scope="module")
def server(tmp_path_factory, toy_weights):
    tmp = tmp_path_factory.mktemp("toyserver")
    broken = tmp / "broken.npz"
    broken.write_bytes(b"this is not an npz file")
    env = {
        "BIONEMO_LITE_HOME": str(tmp / "empty-cache"),
        "BIONEMO_LITE_NO_PLUGINS": "1",  # only the toy family: no heavy plugin in these tests
        "BIONEMO_LITE_WEIGHTS": json.dumps({name: str(toy_weights) for name in TOYS_WITH_WEIGHTS}
                                           | {"toy_broken": str(broken)}),
        "BIONEMO_LITE_MAX_SEQUENCES": str(MAX_SEQUENCES),
        "BIONEMO_LITE_MAX_BODY_BYTES": str(MAX_BODY),
        "BIONEMO_LITE_PRELOAD": "toy_folder",
        "TOY_LOAD_LOG": str(tmp / "loads.log"),
        "TOY_LOAD_DELAY": "0.5",  # a slow load makes concurrent first requests overlap
    }
    with running_server(uvicorn_factory("server_fixtures:toy_app"), env, tmp) as srv:
        srv.load_log = tmp / "loads.log"  # type: ignore[attr-defined]
        assert srv.wait_ready().status_code == 200  # the preload runs in the background
        yield srv


@pytest.fixture(scope="module")
def python_toy(toy_weights):
    register_toys()
    return bionemo_lite.load("toy_encoder", weights=toy_weights)


def loads_of(server, name: str) -> int:
    path = server.load_log
    return path.read_text().split().count(name) if path.exists() else 0


# ---------------------------------------------------------------- settings (no server)

def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("BIONEMO_LITE_WEIGHTS", "a=/w/a.pt, b=/w/b")
    monkeypatch.setenv("BIONEMO_LITE_PRELOAD", "a,b")
    monkeypatch.setenv("BIONEMO_LITE_MAX_SEQUENCES", "7")
    s = Settings()
    assert s.weights == {"a": "/w/a.pt", "b": "/w/b"}
    assert s.preload == ["a", "b"] and s.max_sequences == 7 and s.backend == "inprocess"
    monkeypatch.setenv("BIONEMO_LITE_WEIGHTS", '{"c": "/w/c.pt"}')
    monkeypatch.setenv("BIONEMO_LITE_PRELOAD", '["c"]')
    assert Settings().weights == {"c": "/w/c.pt"} and Settings().preload == ["c"]
    assert Settings(weights={"d": Path("/w/d.pt")}).weights == {"d": "/w/d.pt"}


def test_settings_refuse_typos_and_bad_values():
    with pytest.raises(ValueError, match="max_sequence"):
        Settings(max_sequence=3)
    with pytest.raises(ValueError, match="NAME=PATH"):
        Settings(weights="just-a-path.pt")
    with pytest.raises(ValueError):
        Settings(backend="tensorrt")


def test_unknown_weights_name_fails_at_start(monkeypatch):
    from bionemo_lite.server.app import create_app

    register_toys()
    with pytest.raises(bionemo_lite.UnknownModelError, match="toy_encoder"):
        create_app(Settings(weights={"toy_encodr": "/nowhere.npz"}))


def test_missing_preload_keeps_the_server_not_ready(tmp_path):
    """It used to stop the server; now the server answers and says what is missing and how to fix it."""
    register_toys()
    env = {"BIONEMO_LITE_HOME": str(tmp_path / "cache"), "BIONEMO_LITE_NO_PLUGINS": "1",
           "BIONEMO_LITE_PRELOAD": "toy_encoder_b"}
    with running_server(uvicorn_factory("server_fixtures:toy_app"), env, tmp_path) as srv:
        probes = [httpx.get(f"{srv.base_url}/v1/health/ready") for _ in range(3)]
        listing = {m["name"]: m for m in httpx.get(f"{srv.base_url}/v1/models").json()["models"]}
        log = srv.log()
    assert [p.status_code for p in probes] == [503] * 3
    body = probes[-1].json()
    fix = ["bionemo-lite weights pull toy_encoder_b", 'make serve WEIGHTS="toy_encoder_b=/path/to/toy.npz"',
           "bionemo-lite serve --weights toy_encoder_b=/path/to/toy.npz"]
    assert body["status"] == "not_ready" and body["loading"] == []
    assert [(m["model"], m["file"], m["reason"], m["fix"]) for m in body["missing"]] == [
        ("toy_encoder_b", "toy.npz", "weights_not_found", fix)]
    assert "`bionemo-lite weights pull toy_encoder_b`" in body["detail"] and str(tmp_path) not in probes[-1].text
    assert log.count(body["detail"]) == 1  # said once in the log, not once per probe
    entry = listing["toy_encoder_b"]
    assert entry["loaded"] is False and entry["state"] == "failed" and entry["problem"]["fix"] == fix


# ---------------------------------------------------------------- health, catalogue, docs

def test_health(client):
    assert client.get("/v1/health/live").json()["status"] == "live"
    ready = client.get("/v1/health/ready")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "backend": "inprocess", "detail": None}


def test_preloaded_at_start(client, server):
    assert loads_of(server, "toy_folder") == 1  # before any fold request
    entry = client.get("/v1/models/toy_folder").json()
    assert entry["loaded"] is True and entry["loads"] == 1


def test_models_listing(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert set(models) == {*TOYS_WITH_WEIGHTS, "toy_encoder_b", "toy_broken"}
    assert all(models[name]["weights_available"] is True for name in TOYS_WITH_WEIGHTS)
    assert models["toy_encoder_b"]["weights_available"] is False  # no weights given, empty cache
    assert models["toy_folder"]["verbs"] == ["fold"]
    assert models["toy_smiles"]["input_kind"] == "smiles"
    one = client.get("/v1/models/toy_encoder").json()
    assert one["config"] == {"kind": "encoder", "layers": 2, "dim": 8} and one["family"] == "toy"


def test_openapi_and_docs(client):
    spec = client.get("/openapi.json").json()
    for verb in ("embed", "score", "generate", "fold", "decode", "contacts"):
        op = spec["paths"][f"/v1/models/{{name}}/{verb}"]["post"]
        assert op["summary"] and op["description"]  # the route's docstring line
        assert {"404", "422", "503"} <= set(op["responses"])
    assert "/v1/health/ready" in spec["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


# ---------------------------------------------------------------- errors that name the problem

def test_unknown_model_is_404_with_close_names(client):
    r = client.post("/v1/models/toy_encodr/embed", json={"sequences": ["MKT"]})
    assert r.status_code == 404
    body = r.json()
    assert body["error"] == "unknown_model" and "toy_encoder" in body["close_matches"]
    assert "toy_encoder" in body["detail"]
    r = client.get("/v1/models/toy_foldr")
    assert r.status_code == 404 and "toy_folder" in r.json()["close_matches"]


def test_unknown_model_wins_over_a_bad_body(client):
    r = client.post("/v1/models/nope/embed", json={"sequences": 5})
    assert r.status_code == 404 and r.json()["error"] == "unknown_model"


def test_verb_the_model_lacks(client):
    r = client.post("/v1/models/toy_folder/embed", json={"sequences": ["MKT"]})
    assert r.status_code == 404
    body = r.json()
    assert body["error"] == "unsupported_verb" and body["verbs"] == ["fold"]
    assert "cannot embed" in body["detail"]


def test_unknown_route_is_json(client):
    r = client.get("/v2/whatever")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = client.get("/v1/models/toy_encoder/embed")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_missing_weights_is_503_with_the_message(client, server):
    r = client.post("/v1/models/toy_encoder_b/embed", json={"sequences": ["MKT"]})
    assert r.status_code == 503
    body = r.json()
    assert body["error"] == "weights_not_found" and body["filename"] == "toy.npz"
    assert "weights pull toy_encoder_b" in body["detail"]  # how to get them
    assert loads_of(server, "toy_encoder_b") == 0


def test_unreadable_checkpoint_is_503_model_unavailable(client):
    r = client.post("/v1/models/toy_broken/embed", json={"sequences": ["MKT"]})
    assert r.status_code == 503
    body = r.json()
    assert body["error"] == "model_unavailable" and "not a toy checkpoint" in body["detail"]


def test_invalid_residue_names_record_and_position(client):
    r = client.post("/v1/models/toy_encoder/embed",
                    json={"sequences": [{"id": "ok", "sequence": "MKT"}, {"id": "bad", "sequence": "MKJT"}]})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_input"
    assert (body["record"], body["position"]) == ("bad", 3)
    assert "'J'" in body["reason"] and "'bad'" in body["detail"]


def test_gap_and_plain_string_index(client):
    r = client.post("/v1/models/toy_encoder/score", json={"sequences": ["MKT", "MK-T"]})
    assert r.status_code == 422
    assert (r.json()["record"], r.json()["position"]) == ("1", 3) and "gap" in r.json()["reason"]


def test_duplicate_ids(client):
    r = client.post("/v1/models/toy_encoder/embed",
                    json={"sequences": [{"id": "a", "sequence": "MKT"}, {"id": "a", "sequence": "GGG"}]})
    assert r.status_code == 422 and r.json()["record"] == "a" and "duplicate" in r.json()["reason"]


def test_too_many_sequences_names_the_limit(client):
    r = client.post("/v1/models/toy_encoder/embed", json={"sequences": ["MKT"] * (MAX_SEQUENCES + 1)})
    assert r.status_code == 422
    assert f"at most {MAX_SEQUENCES}" in r.json()["detail"] and "max_sequences" in r.json()["detail"]
    r = client.post("/v1/models/toy_encoder/generate", json={"sequences": ["MKT"] * (MAX_SEQUENCES + 1)})
    assert r.status_code == 422 and f"at most {MAX_SEQUENCES}" in r.json()["detail"]


def test_schema_errors_are_json(client):
    r = client.post("/v1/models/toy_encoder/embed", json={"sequences": [], "pooling": "mean"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_request" and "sequences" in r.json()["detail"]
    r = client.post("/v1/models/toy_encoder/embed", json={"sequences": ["MKT"], "poolin": "mean"})
    assert r.status_code == 422 and "poolin" in r.json()["detail"]
    r = client.post("/v1/models/toy_encoder/embed", content=b'{"sequences": ["MKT"',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    r = client.post("/v1/models/toy_encoder/generate", json={"sequences": ["MK<mask>"], "temperature": 0})
    assert r.status_code == 422 and "temperature" in r.json()["detail"]


def test_body_too_large_declared_length(client):
    big = {"sequences": ["M" * (MAX_BODY + 10)]}
    r = client.post("/v1/models/toy_encoder/embed", json=big)
    assert r.status_code == 413
    assert r.json()["error"] == "payload_too_large" and str(MAX_BODY) in r.json()["detail"]


def test_body_too_large_streamed(client):
    payload = json.dumps({"sequences": ["M" * (MAX_BODY + 10)]}).encode()

    def chunks():  # no Content-Length: the limit must count the stream itself
        for i in range(0, len(payload), 8192):
            yield payload[i:i + 8192]

    r = client.post("/v1/models/toy_encoder/embed", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    # The server still answers afterwards.
    assert client.get("/v1/health/live").status_code == 200


def test_too_long_is_422_and_truncate_lists_it(client, python_toy):
    seqs = [{"id": "short", "sequence": "MKT"}, {"id": "long", "sequence": "A" * 45}]
    r = client.post("/v1/models/toy_encoder/embed", json={"sequences": seqs})
    assert r.status_code == 422
    assert r.json()["record"] == "long" and "maximum of 40" in r.json()["reason"]
    r = client.post("/v1/models/toy_encoder/embed", json={"sequences": seqs, "truncate": True})
    assert r.status_code == 200
    body = r.json()
    assert body["truncated"] == ["long"] and body["lengths"] == [3, 40]
    expected = python_toy.embed([("short", "MKT"), ("long", "A" * 45)], on_too_long="truncate").embeddings
    np.testing.assert_allclose(np.array(body["embeddings"]), expected, atol=1e-6, rtol=0)


def test_plugin_bug_is_a_json_500_and_the_server_goes_on(client):
    r = client.post("/v1/models/toy_encoder/score", json={"sequences": ["MKT"], "method": "crash"})
    assert r.status_code == 500
    body = r.json()
    assert body["error"] == "internal_error" and body["request_id"] == r.headers["x-request-id"]
    assert "toy plugin bug" not in r.text  # the exception's text stays in the log (test_error_bodies.py)
    assert client.post("/v1/models/toy_encoder/score", json={"sequences": ["MKT"]}).status_code == 200


def test_option_the_model_does_not_take(client):
    r = client.post("/v1/models/toy_folder/fold", json={"sequence": "MKTAY", "alignments": ">q\nMKTAY\n"})
    assert r.status_code == 422
    assert "'alignments'" in r.json()["detail"] and "num_recycles" in r.json()["detail"]


# ---------------------------------------------------------------- the verbs

@pytest.mark.parametrize("pooling", ["mean", "bos", "per_residue"])
def test_embed_equals_python(client, python_toy, pooling):
    seqs = [{"id": "p1", "sequence": "MKTAYIAKQR"}, {"id": "p2", "sequence": "gsh mle"}, {"id": "p3", "sequence": "W"}]
    r = client.post("/v1/models/toy_encoder/embed", json={"sequences": seqs, "pooling": pooling, "layer": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = python_toy.embed([(s["id"], s["sequence"]) for s in seqs], layer=1, pooling=pooling)
    assert body["ids"] == ["p1", "p2", "p3"] and body["dim"] == 8 and body["layer"] == 1
    assert body["lengths"] == [10, 6, 1] and body["pooling"] == pooling and body["errors"] == []
    if pooling == "per_residue":
        for got, want in zip(body["embeddings"], expected.embeddings):
            np.testing.assert_allclose(np.array(got), want, atol=1e-6, rtol=0)
    else:
        np.testing.assert_allclose(np.array(body["embeddings"]), expected.embeddings, atol=1e-6, rtol=0)


def test_embed_several_layers(client, python_toy):
    r = client.post("/v1/models/toy_encoder/embed", json={"sequences": ["MKT", "GG"], "layer": [0, -1]})
    body = r.json()
    assert body["layers"] == [0, 2] and set(body["by_layer"]) == {"0", "2"}
    expected = python_toy.embed(["MKT", "GG"], layer=[0, -1])
    for layer in (0, 2):
        np.testing.assert_allclose(np.array(body["by_layer"][str(layer)]), expected.by_layer[layer], atol=1e-6, rtol=0)
    assert "embeddings" not in body and "layer" not in body  # no layer travels twice
    one = client.post("/v1/models/toy_encoder/embed", json={"sequences": ["MKT", "GG"], "layer": [-1]}).json()
    assert one["layer"] == 2 and "by_layer" not in one
    np.testing.assert_allclose(np.array(one["embeddings"]), expected.by_layer[2], atol=1e-6, rtol=0)
    r = client.post("/v1/models/toy_encoder/embed", json={"sequences": ["MKT"], "layer": 5})
    assert r.status_code == 422 and "layer 5" in r.json()["detail"]


def test_score_and_model_errors(client, python_toy):
    r = client.post("/v1/models/toy_encoder/score", json={"sequences": ["MKT", "GGW"], "method": "pll"})
    assert r.status_code == 200
    expected = python_toy.score(["MKT", "GGW"])
    np.testing.assert_allclose(r.json()["scores"], expected.scores, atol=1e-6, rtol=0)
    r = client.post("/v1/models/toy_encoder/score", json={"sequences": ["MKT"], "method": "entropy"})
    assert r.status_code == 422 and "entropy" in r.json()["detail"]


def test_generate_with_aliases_and_family_options(client):
    r = client.post("/v1/models/toy_encoder/generate",
                    json={"sequences": ["MK<mask>T<mask>"], "num_samples": 3, "seed": 7, "temperature": 0.5})
    assert r.status_code == 200, r.text
    gen = r.json()["generated"][0]
    assert gen["seed"] == "MK<mask>T<mask>" and len(gen["generated"]) == 3 and gen["scores"] == [0.5] * 3
    assert all(len(s) == 5 and s[:2] == "MK" and s[3] == "T" for s in gen["generated"])
    again = client.post("/v1/models/toy_encoder/generate",
                        json={"sequences": ["MK<mask>T<mask>"], "num_samples": 3, "seed": 7, "temperature": 0.5})
    assert again.json()["generated"][0]["generated"] == gen["generated"]  # seeded
    # MolMIM field names: smis, num_molecules, and a family option passed through.
    r = client.post("/v1/models/toy_smiles/generate",
                    json={"smis": ["CCO", {"id": "m2", "sequence": "c1ccccc1"}], "num_molecules": 2,
                          "scaled_radius": 0.5})
    assert r.status_code == 200, r.text
    gen = r.json()["generated"]
    assert [g["id"] for g in gen] == ["0", "m2"] and gen[0]["generated"] == ["CCOC", "CCOCC"]
    assert gen[1]["properties"] == {"scaled_radius": [0.5, 0.5]}
    r = client.post("/v1/models/toy_encoder/generate", json={"smis": ["MK<mask>"], "num_molecules": 2})
    assert r.status_code == 200 and len(r.json()["generated"][0]["generated"]) == 2
    r = client.post("/v1/models/toy_encoder/generate", json={"sequences": ["MK<mask>"], "scaled_radius": 0.5})
    assert r.status_code == 422 and "'scaled_radius'" in r.json()["detail"]


def test_fold_json_and_bare_files(client, server):
    body = {"sequence": "MKTAYIAKQR", "num_recycles": 2}
    r = client.post("/v1/models/toy_folder/fold", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["format"] == "pdb" and out["pdb"].startswith("ATOM") and out["mmcif"] is None
    assert len(out["plddt"]) == 10 and out["plddt"][0] == 50.0 and out["plddt"][-1] == 90.0
    assert out["mean_plddt"] == pytest.approx(70.0) and out["ptm"] == 0.5 and len(out["pae"]) == 10
    assert out["num_recycles"] == 2
    r = client.post("/v1/models/toy_folder/fold", json={**body, "format": "mmcif"})
    assert r.json()["pdb"] is None and r.json()["mmcif"].startswith("data_toy")
    r = client.post("/v1/models/toy_folder/fold", json=body, headers={"Accept": "chemical/x-pdb"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("chemical/x-pdb")
    lines = r.text.splitlines()
    assert len([ln for ln in lines if ln.startswith("ATOM")]) == 10 and lines[-1] == "END"
    assert float(lines[-2][60:66]) == 90.0  # pLDDT in the B-factor column
    r = client.post("/v1/models/toy_folder/fold", json=body, headers={"Accept": "chemical/x-mmcif"})
    assert r.headers["content-type"].startswith("chemical/x-mmcif") and "recycles=2" in r.text


def test_fold_limits_checked_before_loading(client, server, toy_weights, tmp_path):
    before = loads_of(server, "toy_folder")
    r = client.post("/v1/models/toy_folder/fold", json={"sequence": "A" * 20 + ":" + "G" * 11})
    assert r.status_code == 422 and "31 residues" in r.json()["detail"]
    r = client.post("/v1/models/toy_folder/fold", json={"sequence": "MKT:"})
    assert r.status_code == 422 and r.json()["record"] == "sequence, chain B" and "empty" in r.json()["reason"]
    r = client.post("/v1/models/toy_folder/fold", json={"sequence": "MKT:GGZ1", "id": "cplx"})
    assert (r.json()["record"], r.json()["position"]) == ("cplx, chain B", 4)
    assert loads_of(server, "toy_folder") == before


def test_decode(client):
    hiddens = [[[0.1, 0.2]] * 3, [[0.3, 0.4]] * 3]
    r = client.post("/v1/models/toy_smiles/decode", json={"hiddens": hiddens, "mask": [[1, 1, 0], [1, 1, 1]]})
    assert r.status_code == 200, r.text
    assert r.json() == {"model": "toy_smiles", "generated": ["CC", "CCC"]}
    r = client.post("/v1/models/toy_smiles/decode",
                    json={"hiddens": hiddens, "mask": [[True, False, False], [1, 1, 1]], "method": "beam"})
    assert r.json()["generated"] == ["CO", "CCCO"]


def test_decode_shapes_are_checked(client):
    r = client.post("/v1/models/toy_smiles/decode", json={"hiddens": [[[0.0, 1.0], [2.0]]], "mask": [[1, 1]]})
    assert r.status_code == 422 and "hiddens[0]" in r.json()["detail"]
    r = client.post("/v1/models/toy_smiles/decode", json={"hiddens": [[[0.0], [1.0]]], "mask": [[1, 1, 0]]})
    assert r.status_code == 422 and "mask must be [1, 2]" in r.json()["detail"]


def test_concurrent_first_requests_load_once(server):
    bodies = [{"sequences": [{"id": f"s{i}", "sequence": "MKTAY"[: 1 + i % 5]}], "pooling": "mean"}
              for i in range(16)]
    assert loads_of(server, "toy_encoder_c") == 0
    responses = parallel_posts(server.base_url, "/v1/models/toy_encoder_c/embed", bodies)
    assert [r.status_code for r in responses] == [200] * 16, [r.text for r in responses if r.status_code != 200]
    assert [r.json()["ids"] for r in responses] == [[f"s{i}"] for i in range(16)]
    assert loads_of(server, "toy_encoder_c") == 1
    entry = httpx.get(f"{server.base_url}/v1/models/toy_encoder_c").json()
    assert entry["loaded"] is True and entry["loads"] == 1
