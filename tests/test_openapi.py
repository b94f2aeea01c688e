"""The live server's ``/openapi.json`` documents every error answer and the limits the server enforces.

A real uvicorn process with the toy plugin (and the registered families) and its own ``max_sequences``;
each documented limit is checked against the server too: just past it is a 422, at it is not.
"""

from __future__ import annotations

import json

import pytest

from bionemo_lite.options import MAX_TEMPERATURE, MIN_TEMPERATURE
from bionemo_lite.pooling import POOLINGS
from bionemo_lite.registry import list_models
from server_fixtures import running_server, uvicorn_factory, write_toy_weights

MAX_SEQUENCES = 5
VERBS = ("embed", "contacts", "score", "generate", "fold", "decode")
VERB_ERRORS = {"400", "401", "403", "404", "413", "422", "429", "503", "504"}
GUARD_ERRORS = {"401", "403", "429"}  # API keys and rate limits, in front of every /v1/models route
ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("openapi")
    weights = write_toy_weights(tmp / "toy.npz")
    env = {"BIONEMO_LITE_HOME": str(tmp / "cache"), "BIONEMO_LITE_DEFAULT_MODEL": "off",
           "BIONEMO_LITE_WEIGHTS": json.dumps({"toy_encoder": str(weights), "toy_folder": str(weights),
                                               "toy_smiles": str(weights)}),
           "BIONEMO_LITE_MAX_SEQUENCES": str(MAX_SEQUENCES)}
    with running_server(uvicorn_factory("server_fixtures:toy_app"), env, tmp) as srv:
        yield srv


@pytest.fixture(scope="module")
def document(client) -> dict:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def _body(document: dict, name: str) -> dict:
    return document["components"]["schemas"][name]["properties"]


def _string_branch(prop: dict) -> dict:
    return next(choice for choice in prop.get("anyOf", [prop]) if choice.get("type") == "string")


def test_every_verb_route_documents_its_error_answers_with_the_error_body(document):
    for verb in VERBS:
        responses = document["paths"][f"/v1/models/{{name}}/{verb}"]["post"]["responses"]
        assert VERB_ERRORS <= set(responses), (verb, sorted(responses))
        for code in VERB_ERRORS:
            assert responses[code]["content"]["application/json"]["schema"] == ERROR_BODY, (verb, code)
            assert responses[code]["description"]
    assert "406" in document["paths"]["/v1/models/{name}/fold"]["post"]["responses"]
    error_body = document["components"]["schemas"]["ErrorBody"]
    assert {"error", "detail"} <= set(error_body["required"]) and "request_id" in error_body["properties"]


def test_every_models_route_documents_the_guards_and_the_probes_stay_open(document):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            if path.startswith("/v1/models"):
                assert GUARD_ERRORS <= codes, (method, path, sorted(codes))
            elif path.startswith("/v1/health"):
                assert not GUARD_ERRORS & codes, (method, path, sorted(codes))


def test_the_counted_lists_carry_this_servers_max_sequences(document):
    for body, field in [("EmbedRequest", "sequences"), ("ScoreRequest", "sequences"),
                        ("ContactsRequest", "sequences"), ("GenerateRequest", "sequences"),
                        ("DecodeRequest", "hiddens")]:
        assert _body(document, body)[field]["maxItems"] == MAX_SEQUENCES, body
        assert _body(document, body)[field]["minItems"] == 1, body


def test_numeric_ranges_and_enums(document):
    generate, fold = _body(document, "GenerateRequest"), _body(document, "FoldRequest")
    assert (generate["temperature"]["minimum"], generate["temperature"]["maximum"]) == (MIN_TEMPERATURE, MAX_TEMPERATURE)
    assert _integer(generate["top_k"])["minimum"] == 1
    assert (_integer(generate["num_samples"])["minimum"], _integer(generate["num_samples"])["maximum"]) == (1, 100)
    assert (_integer(fold["num_recycles"])["minimum"], _integer(fold["num_recycles"])["maximum"]) == (0, 64)
    assert _string_branch(_body(document, "EmbedRequest")["pooling"])["enum"] == list(POOLINGS)
    declared = {m for spec in list_models("score") for m in spec.score_methods}
    assert declared and set(_string_branch(_body(document, "ScoreRequest")["method"])["enum"]) == declared
    assert set(fold["format"]["enum"]) == {"pdb", "mmcif"}


def _integer(prop: dict) -> dict:
    return next(choice for choice in prop.get("anyOf", [prop]) if choice.get("type") == "integer")


def test_each_verb_route_names_the_models_that_have_the_verb(document, client):
    served = client.get("/v1/models").json()  # the server's registry (this process may have registered others)
    served = served["models"] if isinstance(served, dict) else served
    assert {"toy_encoder", "toy_folder"} <= {m["name"] for m in served}
    for verb in VERBS:
        parameters = document["paths"][f"/v1/models/{{name}}/{verb}"]["post"]["parameters"]
        name = next(p for p in parameters if p["in"] == "path" and p["name"] == "name")
        registered = [m["name"] for m in served if verb in m["verbs"]]
        assert sorted(name["schema"]["enum"]) == sorted(registered), verb
    embed_names = next(p for p in document["paths"]["/v1/models/{name}/embed"]["post"]["parameters"])["schema"]["enum"]
    assert "toy_encoder" in embed_names and "toy_folder" not in embed_names


@pytest.mark.parametrize("path, at_limit, past_limit", [
    ("/v1/models/toy_encoder/embed", {"sequences": ["MKT"] * MAX_SEQUENCES}, {"sequences": ["MKT"] * (MAX_SEQUENCES + 1)}),
    ("/v1/models/toy_smiles/decode", {"hiddens": [[[0.5]]] * MAX_SEQUENCES, "mask": [[True]] * MAX_SEQUENCES},
     {"hiddens": [[[0.5]]] * (MAX_SEQUENCES + 1), "mask": [[True]] * (MAX_SEQUENCES + 1)}),
    ("/v1/models/toy_encoder/generate", {"sequences": ["MK<mask>"], "temperature": MAX_TEMPERATURE},
     {"sequences": ["MK<mask>"], "temperature": MAX_TEMPERATURE * 1.01}),
    ("/v1/models/toy_encoder/generate", {"sequences": ["MK<mask>"], "num_samples": 100},
     {"sequences": ["MK<mask>"], "num_samples": 101}),
    ("/v1/models/toy_folder/fold", {"sequence": "MKT", "num_recycles": 64}, {"sequence": "MKT", "num_recycles": 65}),
    ("/v1/models/toy_encoder/embed", {"sequences": ["MKT"], "pooling": "bos"}, {"sequences": ["MKT"], "pooling": "sum"}),
])
def test_the_server_enforces_what_the_document_states(client, path, at_limit, past_limit):
    ok = client.post(path, json=at_limit)
    assert ok.status_code == 200, ok.text
    refused = client.post(path, json=past_limit)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] in ("invalid_input", "invalid_request") and refused.json()["request_id"]
