"""Every option over HTTP is typed, finite and in range, and every unknown key is refused, on
every route, before a model computes anything: a real uvicorn process serving the toy family of
`server_fixtures` (whose verbs take every value, so whatever is refused is refused by the server)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from server_fixtures import running_server, uvicorn_factory, write_toy_weights

TOYS = ("toy_encoder", "toy_folder", "toy_smiles")
HIDDENS = [[[0.1, 0.2]] * 3]
BODIES = {  # a valid body per route
    "toy_encoder/embed": {"sequences": ["MKT"]},
    "toy_encoder/score": {"sequences": ["MKT"]},
    "toy_encoder/generate": {"sequences": ["MK<mask>"]},
    "toy_folder/fold": {"sequence": "MKTAY"},
    "toy_smiles/decode": {"hiddens": HIDDENS, "mask": [[True, True, False]]},
}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("optionserver")
    weights = write_toy_weights(tmp / "toy.npz")
    env = {"BIONEMO_LITE_HOME": str(tmp / "empty-cache"), "BIONEMO_LITE_NO_PLUGINS": "1",
           "BIONEMO_LITE_WEIGHTS": json.dumps({name: str(weights) for name in TOYS})}
    with running_server(uvicorn_factory("server_fixtures:toy_app"), env, tmp) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=60) as c:
            yield c


def post(client: httpx.Client, route: str, **changes) -> httpx.Response:
    return client.post(f"/v1/models/{route}", json={**BODIES.get(route, {}), **changes})


def post_raw(client: httpx.Client, route: str, text: str) -> httpx.Response:
    """A body as written, e.g. with the ``Infinity`` / ``NaN`` literals Python's json module reads."""
    return client.post(f"/v1/models/{route}", content=text.encode(), headers={"content-type": "application/json"})


def refused(r: httpx.Response, *names: str) -> None:
    assert r.status_code == 422, r.text
    assert all(name in r.json()["detail"] for name in names), r.json()["detail"]


def test_valid_bodies_are_answered(client):
    for route in BODIES:
        assert post(client, route).status_code == 200, route


@pytest.mark.parametrize("route, option, value", [
    ("toy_encoder/embed", "truncate", 1),
    ("toy_encoder/embed", "truncate", "true"),
    ("toy_encoder/embed", "include_hiddens", 0),
    ("toy_encoder/score", "truncate", 0),
])
def test_booleans_must_be_json_booleans(client, route, option, value):
    refused(post(client, route, **{option: value}), option, "valid boolean")


@pytest.mark.parametrize("route, option, value", [
    ("toy_encoder/embed", "layer", True),
    ("toy_encoder/embed", "layer", "1"),
    ("toy_encoder/embed", "layer", [0, False]),
    ("toy_encoder/generate", "num_samples", "3"),
    ("toy_encoder/generate", "num_samples", True),
    ("toy_encoder/generate", "num_samples", 2.0),
    ("toy_encoder/generate", "top_k", "5"),
    ("toy_encoder/generate", "seed", True),
    ("toy_folder/fold", "num_recycles", True),
    ("toy_folder/fold", "num_recycles", "2"),
])
def test_integers_must_be_json_integers(client, route, option, value):
    refused(post(client, route, **{option: value}), option, "valid integer")


def test_strings_must_be_strings(client):
    refused(post(client, "toy_encoder/embed", sequences=["MKT", 5]), "sequences[1]")
    refused(post(client, "toy_encoder/score", method=1), "method")
    refused(post(client, "toy_folder/fold", sequence=12), "sequence")


@pytest.mark.parametrize("route, text, option", [
    ("toy_encoder/generate", '{"sequences": ["MK<mask>"], "temperature": Infinity}', "temperature"),
    ("toy_encoder/generate", '{"sequences": ["MK<mask>"], "temperature": NaN}', "temperature"),
    ("toy_smiles/decode", '{"hiddens": [[[0.1, NaN]]], "mask": [[true]]}', "hiddens[0][0][1]"),
    ("toy_smiles/decode", '{"hiddens": [[[0.1, -Infinity]]], "mask": [[true]]}', "hiddens[0][0][1]"),
])
def test_numbers_must_be_finite(client, route, text, option):
    refused(post_raw(client, route, text), option, "finite number")


def test_a_temperature_too_small_for_the_logits_is_refused_with_the_bound(client):
    r = post(client, "toy_encoder/generate", temperature=1e-40)
    refused(r, "temperature", "0.001")
    assert post(client, "toy_encoder/generate", temperature=0.001).status_code == 200


def test_ranges_of_the_sampling_options(client):
    refused(post(client, "toy_encoder/generate", seed=-1), "seed", "greater than or equal to 0")
    refused(post(client, "toy_encoder/generate", num_samples=0), "num_samples")
    refused(post(client, "toy_encoder/generate", top_k=0), "top_k")


def test_a_mask_is_booleans_or_zeros_and_ones(client):
    assert post(client, "toy_smiles/decode", mask=[[1, 1, 0]]).json()["generated"] == ["CC"]
    refused(post(client, "toy_smiles/decode", mask=[[1, 2, 0]]), "mask[0][1]")


@pytest.mark.parametrize("route", list(BODIES))
@pytest.mark.parametrize("value", [1, None])
def test_unknown_keys_are_refused_on_every_route(client, route, value):
    refused(post(client, route, bogus_option=value), "bogus_option")


def test_unknown_keys_are_named_together_with_the_known_ones(client):
    r = post(client, "toy_encoder/embed", poolin="mean", layers=[1])
    refused(r, "'poolin', 'layers'", "known keys: sequences, smis, layer, pooling")
    r = post(client, "toy_encoder/score", sequences=[{"id": "a", "sequence": "MKT", "name": "x"}])
    refused(r, "'name'", "known keys: id, sequence")


def test_unknown_family_options_are_named_together_with_the_accepted_ones(client):
    r = post(client, "toy_encoder/generate", temprature=0.5, radius=2)
    refused(r, "'temprature', 'radius'", "it accepts: num_samples, temperature, top_k, seed")
    r = post(client, "toy_smiles/generate", sequences=["CCO"], num_samples=2, num_molecules=3)
    refused(r, "'num_samples' and 'num_molecules'")


def test_family_options_still_pass_through(client):
    r = post(client, "toy_smiles/generate", smis=["CCO"], num_molecules=2, scaled_radius=0.5)
    assert r.status_code == 200, r.text
    assert r.json()["generated"][0]["properties"] == {"scaled_radius": [0.5, 0.5]}
    r = post(client, "toy_smiles/decode", method="beam")
    assert r.status_code == 200 and r.json()["generated"] == ["CCO"]
