"""``POST /v1/models/{name}/contacts`` through a real uvicorn process: ESM-2 contact maps equal to
fair-esm's ``return_contacts=True`` on the same tiny checkpoint, as JSON and as files, and the
answers when a model has no contact head."""

from __future__ import annotations

import io
import json

import h5py
import httpx
import numpy as np
import pytest

from bionemo_lite.zoo.esm2.testing import TinyEsm2, write_fair_esm_checkpoint
from esm2_fixtures import fair_run
from server_fixtures import free_port, running_server, serve_cli, uvicorn_factory

NAME = "esm2_t6_8M_UR50D"  # tiny random weights + contact regression
NO_HEAD = "esm2_t12_35M_UR50D"  # tiny random weights, no contact-regression file beside them
SEQS = {"mid": "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "short": "MKTA", "rare": "ACDEFGHIKLMNPQRSTVWYXBUZO"}
ITEMS = [{"id": k, "sequence": v} for k, v in SEQS.items()]
TOL = 1e-5  # fp32, explicit attention maps on both sides


@pytest.fixture(scope="module")
def server(tmp_path_factory, esm2_fair_checkpoint):
    bare = write_fair_esm_checkpoint(tmp_path_factory.mktemp("nohead"), NO_HEAD, TinyEsm2(seed=1),
                                     with_regression=False)
    args = ("--weights", f"{NAME}={esm2_fair_checkpoint}", "--weights", f"{NO_HEAD}={bare}", "--max-sequences", "4")
    with serve_cli(tmp_path_factory.mktemp("contactserver"), *args) as srv:
        yield srv


@pytest.fixture(scope="module")
def reference(fair_ref):
    """fair-esm's contacts per record, cut to the record's residues (its batch pads the shorter ones)."""
    maps = fair_run(fair_ref, list(SEQS.values()), contacts=True)["contacts"].numpy()
    return {k: maps[i, : len(s), : len(s)] for i, (k, s) in enumerate(SEQS.items())}


def post(client: httpx.Client, name: str = NAME, **body) -> httpx.Response:
    return client.post(f"/v1/models/{name}/contacts", json={"sequences": ITEMS, **body})


def test_contacts_json_equal_fair_esm_return_contacts(client, reference):
    r = post(client)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == NAME and body["ids"] == list(SEQS) and body["truncated"] == []
    assert body["lengths"] == [len(s) for s in SEQS.values()]
    diffs = []
    for rid, got in zip(body["ids"], body["contacts"]):
        got = np.asarray(got, dtype=np.float32)
        assert got.shape == reference[rid].shape
        diffs.append(float(np.abs(got - reference[rid]).max()))
        assert np.allclose(got, got.T, atol=1e-6) and ((got >= 0) & (got <= 1)).all()  # symmetric probabilities
    print(f"\ncontacts over HTTP vs fair-esm return_contacts: max abs diff {max(diffs):.1e}")
    assert max(diffs) <= TOL, diffs


@pytest.mark.parametrize("fmt", ["npz", "h5"])
def test_contacts_as_a_file_equal_the_json(client, fmt):
    want = post(client).json()
    r = post(client, format=fmt)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == {"npz": "application/x-npz", "h5": "application/x-hdf5"}[fmt]
    assert f'filename="{NAME}-contacts.{fmt}"' in r.headers["content-disposition"]
    if fmt == "npz":
        data = np.load(io.BytesIO(r.content), allow_pickle=False)
        ids, lengths, meta = list(data["ids"]), data["lengths"].tolist(), json.loads(data["metadata"].item())
        maps = [data[f"contacts/{i}"] for i in range(len(ids))]
    else:
        with h5py.File(io.BytesIO(r.content), "r") as h5:
            ids, lengths, meta = list(h5["ids"].asstr()), h5["lengths"][()].tolist(), json.loads(h5.attrs["metadata"])
            maps = [h5[f"contacts/{i}"][()] for i in range(len(ids))]
    assert ids == want["ids"] and lengths == want["lengths"]
    assert meta == {"model": NAME, "truncated": []}
    for got, expected in zip(maps, want["contacts"]):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, np.asarray(expected, dtype=np.float32))  # the same float32 values
    print(f"\ncontacts of {sum(lengths)} residues: JSON {len(post(client).content)} B, {fmt} {len(r.content)} B")


def test_truncate_cuts_and_lists_the_record(client):
    long = "MKTAYIAKQR" * 103  # 1030 residues > 1022
    r = client.post(f"/v1/models/{NAME}/contacts", json={"sequences": [{"id": "long", "sequence": long}]})
    assert r.status_code == 422 and r.json()["record"] == "long" and "1022" in r.json()["reason"]
    r = client.post(f"/v1/models/{NAME}/contacts", json={"sequences": [{"id": "long", "sequence": long}],
                                                         "truncate": True, "format": "npz"})
    assert r.status_code == 200, r.text
    data = np.load(io.BytesIO(r.content))
    assert data["contacts/0"].shape == (1022, 1022) and json.loads(data["metadata"].item())["truncated"] == ["long"]


def test_a_model_without_contact_regression_says_which_file_is_missing(client):
    r = post(client, NO_HEAD)
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "model_unavailable"
    assert f"{NO_HEAD}-contact-regression.pt" in r.json()["detail"]
    assert post(client, NO_HEAD).status_code == 503  # and stays so, without breaking the model's other verbs
    assert client.post(f"/v1/models/{NO_HEAD}/embed", json={"sequences": ["MKT"]}).status_code == 200


def test_bad_requests(client):
    r = client.post("/v1/models/prot_t5_xl_uniref50/contacts", json={"sequences": ["MKT"]})
    assert r.status_code == 404 and r.json()["error"] == "unsupported_verb" and "contacts" in r.json()["detail"]
    r = post(client, truncate=1)
    assert r.status_code == 422 and "truncate" in r.json()["detail"]
    r = post(client, layer=3)
    assert r.status_code == 422 and "layer" in r.json()["detail"]
    r = post(client, format="csv")
    assert r.status_code == 422 and "format" in r.json()["detail"]
    r = client.post(f"/v1/models/{NAME}/contacts", json={"sequences": ["MKT"] * 5})
    assert r.status_code == 422 and "at most 4" in r.json()["detail"]
    r = client.post(f"/v1/models/{NAME}/contacts", json={"sequences": [{"id": "x", "sequence": "MKJT"}]})
    assert r.status_code == 422 and (r.json()["record"], r.json()["position"]) == ("x", 3)


def test_contacts_are_listed_as_an_esm2_verb(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert "contacts" in models[NAME]["verbs"] and "contacts" not in models["prot_t5_xl_uniref50"]["verbs"]
    assert "/v1/models/{name}/contacts" in client.get("/openapi.json").json()["paths"]


def test_the_triton_backend_says_it_does_not_serve_contacts(tmp_path):
    env = {"BIONEMO_LITE_HOME": str(tmp_path / "cache"), "BIONEMO_LITE_BACKEND": "triton",
           "BIONEMO_LITE_TRITON_URL": f"127.0.0.1:{free_port()}"}  # nothing listens: no Triton is needed
    with running_server(uvicorn_factory("bionemo_lite.server.app:create_app"), env, tmp_path) as api:
        r = httpx.post(f"{api.base_url}/v1/models/{NAME}/contacts", json={"sequences": ["MKT"]}, timeout=60)
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "unsupported_verb" and "triton backend" in r.json()["detail"]
