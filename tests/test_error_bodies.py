"""Error bodies carry a request id and never a server path or an unexpected exception's text;
the log keeps both, under the same id. A real uvicorn process with the toy plugin."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

import server_fixtures
from server_fixtures import running_server, uvicorn_factory, write_toy_weights

TOY_FIX = ['make serve WEIGHTS="toy_broken=/path/to/broken.npz"',
           "bionemo-lite serve --weights toy_broken=/path/to/broken.npz"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("errorbodies")
    weights = write_toy_weights(tmp / "weights" / "toy.npz")
    broken = tmp / "weights" / "broken.npz"
    broken.write_bytes(b"\x93NUMPY corrupt")  # looks like numpy, is not
    env = {"BIONEMO_LITE_HOME": str(tmp / "cache"), "BIONEMO_LITE_NO_PLUGINS": "1",
           "BIONEMO_LITE_WEIGHTS": json.dumps({"toy_encoder": str(weights), "toy_folder": str(weights),
                                               "toy_broken": str(broken)}),
           "BIONEMO_LITE_MAX_BODY_BYTES": "4096"}
    with running_server(uvicorn_factory("server_fixtures:toy_app"), env, tmp) as srv:
        srv.tmp = tmp  # type: ignore[attr-defined]
        yield srv


def no_server_path(response: httpx.Response, server) -> None:
    assert str(server.tmp) not in response.text and "/tmp/" not in response.text, response.text
    assert str(Path(server_fixtures.__file__).resolve().parent) not in response.text


def test_request_id_is_made_up_echoed_or_replaced(client):
    r = client.get("/v1/health/live")
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    echoed = client.get("/v1/health/live", headers={"X-Request-ID": "trace-42.a:b"})
    assert echoed.headers["x-request-id"] == "trace-42.a:b"
    for insane in ("../../etc/passwd", "x" * 200, "<script>", "has space"):
        got = client.get("/v1/health/live", headers={"X-Request-ID": insane}).headers["x-request-id"]
        assert got != insane and re.fullmatch(r"[0-9a-f]{32}", got)


@pytest.mark.parametrize("method, path, body, headers, status", [
    ("POST", "/v1/models/nope/embed", {"sequences": ["MKT"]}, {}, 404),
    ("GET", "/v2/whatever", None, {}, 404),
    ("POST", "/v1/models/toy_encoder/embed", {"sequences": ["MKJT"]}, {}, 422),
    ("POST", "/v1/models/toy_encoder/embed", {"sequences": []}, {}, 422),
    ("POST", "/v1/models/toy_encoder/embed", {"sequences": ["M" * 5000]}, {}, 413),
    ("POST", "/v1/models/toy_encoder_b/embed", {"sequences": ["MKT"]}, {}, 503),
    ("POST", "/v1/models/toy_broken/embed", {"sequences": ["MKT"]}, {}, 503),
    ("POST", "/v1/models/toy_encoder/score", {"sequences": ["MKT"], "method": "crash"}, {}, 500),
])
def test_every_error_body_carries_the_request_id(client, method, path, body, headers, status):
    rid = f"req-{status}-{path.rsplit('/', 2)[-2]}"
    r = client.request(method, path, json=body, headers={**headers, "X-Request-ID": rid})
    assert r.status_code == status, r.text
    assert r.headers["x-request-id"] == rid and r.json()["request_id"] == rid


def test_unexpected_error_is_500_internal_error_with_the_id_and_the_log_has_the_rest(client, server):
    r = client.post("/v1/models/toy_encoder/score", json={"sequences": ["MKT"], "method": "crash"})
    assert r.status_code == 500
    rid = r.headers["x-request-id"]
    body = r.json()
    assert set(body) == {"error", "detail", "request_id"}
    assert body["error"] == "internal_error" and body["request_id"] == rid and rid in r.text
    assert "toy plugin bug" not in r.text and "RuntimeError" not in r.text
    no_server_path(r, server)
    log = server.log()
    where = log.index(f"request {rid}: unhandled error")
    assert "RuntimeError: toy plugin bug reading " + str(Path(server_fixtures.__file__).resolve()) in log[where:]


def test_corrupt_checkpoint_is_503_naming_model_reason_and_fix_without_paths(client, server):
    r = client.post("/v1/models/toy_broken/embed", json={"sequences": ["MKT"]})
    assert r.status_code == 503
    body = r.json()
    assert body["error"] == "model_unavailable" and body["model"] == "toy_broken" and body["file"] == "broken.npz"
    assert "not a toy checkpoint" in body["detail"] and body["fix"] == TOY_FIX
    assert f"`{TOY_FIX[0]}`" in body["detail"]
    no_server_path(r, server)
    rid = r.headers["x-request-id"]
    line = next(ln for ln in server.log().splitlines() if f"request {rid}:" in ln)
    assert str(server.tmp / "weights" / "broken.npz") in line  # the log keeps the path


def test_missing_weights_is_503_naming_model_file_and_fix_without_paths(client, server):
    r = client.post("/v1/models/toy_encoder_b/embed", json={"sequences": ["MKT"]})
    assert r.status_code == 503
    body = r.json()
    assert body["error"] == "weights_not_found" and body["model"] == "toy_encoder_b" and body["filename"] == "toy.npz"
    assert body["fix"] == ["bionemo-lite weights pull toy_encoder_b",
                           'make serve WEIGHTS="toy_encoder_b=/path/to/toy.npz"',
                           "bionemo-lite serve --weights toy_encoder_b=/path/to/toy.npz"]
    assert "searched" not in body and "`bionemo-lite weights pull toy_encoder_b`" in body["detail"]
    no_server_path(r, server)
    rid = r.headers["x-request-id"]
    line = next(ln for ln in server.log().splitlines() if f"request {rid}:" in ln)
    assert str(server.tmp / "cache" / "toy_encoder_b") in line


def test_models_listing_says_why_a_model_cannot_load_without_paths(client, server):
    client.post("/v1/models/toy_broken/embed", json={"sequences": ["MKT"]})  # a failed load is remembered
    r = client.get("/v1/models")
    models = {m["name"]: m for m in r.json()["models"]}
    assert models["toy_broken"]["loaded"] is False and models["toy_broken"]["state"] == "failed"
    assert models["toy_broken"]["problem"]["reason"] == "model_unavailable"
    assert models["toy_encoder_b"]["problem"]["reason"] == "weights_not_found"
    no_server_path(r, server)
