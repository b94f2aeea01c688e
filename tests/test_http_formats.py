"""Compact answers over HTTP (a real uvicorn process serving the toy family): embeddings as
``.npz`` / ``.h5`` files and PAE as base64 float16 or ``.npz``, read back with numpy and h5py and
compared with the JSON answer to the same request."""

from __future__ import annotations

import base64
import io
import json

import h5py
import httpx
import numpy as np
import pytest

from server_fixtures import TOY_DIM, running_server, uvicorn_factory, write_toy_weights

SEQS = [{"id": "p1", "sequence": "MKTAYIAKQR"}, {"id": "p/2", "sequence": "GSHMLE"}, {"id": "p3", "sequence": "W"}]
MEDIA = {"npz": "application/x-npz", "h5": "application/x-hdf5"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("formatserver")
    weights = write_toy_weights(tmp / "toy.npz")
    env = {"BIONEMO_LITE_HOME": str(tmp / "empty-cache"), "BIONEMO_LITE_NO_PLUGINS": "1",
           "BIONEMO_LITE_WEIGHTS": json.dumps({name: str(weights) for name in ("toy_encoder", "toy_folder")})}
    with running_server(uvicorn_factory("server_fixtures:toy_app"), env, tmp) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=60) as c:
            yield c


def read_file(r: httpx.Response, fmt: str) -> tuple[dict[str, np.ndarray], dict]:
    """Every array of an answer file by path, and its metadata, as a client reads them."""
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == MEDIA[fmt] and "attachment; filename=" in r.headers["content-disposition"]
    if fmt == "npz":
        with np.load(io.BytesIO(r.content), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        return arrays, json.loads(arrays.pop("metadata").item())
    arrays = {}

    def keep(path: str, node: object) -> None:
        if isinstance(node, h5py.Dataset):
            arrays[path] = node.asstr()[()] if h5py.check_string_dtype(node.dtype) else node[()]

    with h5py.File(io.BytesIO(r.content), "r") as h5:
        h5.visititems(keep)
        return arrays, json.loads(h5.attrs["metadata"])


def embed(client: httpx.Client, **body) -> httpx.Response:
    return client.post("/v1/models/toy_encoder/embed", json={"sequences": SEQS, **body})


@pytest.mark.parametrize("fmt", ["npz", "h5"])
@pytest.mark.parametrize("pooling", ["mean", "bos"])
def test_pooled_embeddings_file_is_the_json_matrix(client, fmt, pooling):
    want = embed(client, pooling=pooling).json()
    arrays, meta = read_file(embed(client, pooling=pooling, format=fmt), fmt)
    assert set(arrays) == {"ids", "lengths", "layers", "embeddings"}
    assert list(arrays["ids"]) == want["ids"] == ["p1", "p/2", "p3"]  # any id, "/" included
    assert arrays["lengths"].tolist() == want["lengths"] and arrays["layers"].tolist() == want["layers"]
    assert arrays["embeddings"].dtype == np.float32 and arrays["embeddings"].shape == (3, TOY_DIM)
    np.testing.assert_array_equal(arrays["embeddings"], np.asarray(want["embeddings"], np.float32))
    assert meta == {k: want[k] for k in ("model", "dim", "layer", "pooling", "truncated", "windowed", "errors")}


@pytest.mark.parametrize("fmt", ["npz", "h5"])
def test_per_residue_embeddings_file_has_one_array_per_record(client, fmt):
    want = embed(client, pooling="per_residue").json()
    r = embed(client, pooling="per_residue", format=fmt)
    arrays, meta = read_file(r, fmt)
    assert sorted(k for k in arrays if k.startswith("embeddings/")) == ["embeddings/0", "embeddings/1", "embeddings/2"]
    for i, rows in enumerate(want["embeddings"]):
        assert arrays[f"embeddings/{i}"].shape == (want["lengths"][i], TOY_DIM)
        np.testing.assert_array_equal(arrays[f"embeddings/{i}"], np.asarray(rows, np.float32))
    assert meta["pooling"] == "per_residue"
    json_size = len(embed(client, pooling="per_residue").content)
    print(f"\nper-residue toy embeddings ({sum(want['lengths'])} x {TOY_DIM}): JSON {json_size} B, {fmt} {len(r.content)} B")


@pytest.mark.parametrize("fmt", ["npz", "h5"])
def test_several_layers_file_and_json_hold_each_layer_once(client, fmt):
    want = embed(client, layer=[0, -1], pooling="per_residue").json()
    assert "embeddings" not in want and set(want["by_layer"]) == {"0", "2"}
    arrays, meta = read_file(embed(client, layer=[0, -1], pooling="per_residue", format=fmt), fmt)
    assert not any(k.startswith("embeddings") for k in arrays) and arrays["layers"].tolist() == [0, 2]
    for layer in ("0", "2"):
        for i, rows in enumerate(want["by_layer"][layer]):
            np.testing.assert_array_equal(arrays[f"by_layer/{layer}/{i}"], np.asarray(rows, np.float32))
    assert "layer" not in meta and "by_layer" not in meta
    pooled, _ = read_file(embed(client, layer=[1, 2], format=fmt), fmt)
    assert pooled["by_layer/1"].shape == pooled["by_layer/2"].shape == (3, TOY_DIM)


def test_include_hiddens_travel_in_the_file(client):
    want = embed(client, include_hiddens=True).json()
    arrays, meta = read_file(embed(client, include_hiddens=True, format="npz"), "npz")
    np.testing.assert_array_equal(arrays["hiddens"], np.asarray(want["hiddens"], np.float32))
    assert arrays["mask"].dtype == bool and arrays["mask"].tolist() == want["mask"]
    assert "hiddens" not in meta and "mask" not in meta


def test_a_bad_format_is_422(client):
    r = embed(client, format="parquet")
    assert r.status_code == 422 and "format" in r.json()["detail"]


# ---------------------------------------------------------------- PAE

FOLD = {"sequence": "MKTAYIAKQRQISFVKSHFSR"}


def fold(client: httpx.Client, **body) -> httpx.Response:
    return client.post("/v1/models/toy_folder/fold", json={**FOLD, **body})


def test_pae_as_base64_float16_in_the_json(client):
    want = fold(client).json()
    r = fold(client, pae_format="base64_float16")
    assert r.status_code == 200, r.text
    body = r.json()
    pae = body.pop("pae")
    assert pae["dtype"] == "float16" and pae["shape"] == [21, 21]
    got = np.frombuffer(base64.b64decode(pae["data"]), "<f2").reshape(pae["shape"])
    reference = np.asarray(want.pop("pae"), np.float32)
    np.testing.assert_allclose(got, reference, rtol=2 ** -11, atol=0)  # float16: 11 significant bits
    assert body == want  # everything else as in the JSON answer
    print(f"\nPAE 21 x 21 (toy): JSON answer {len(fold(client).content)} B, base64 float16 {len(r.content)} B")


def test_pae_format_npz_is_the_whole_answer(client):
    want = fold(client, format="mmcif").json()
    arrays, meta = read_file(fold(client, format="mmcif", pae_format="npz"), "npz")
    np.testing.assert_array_equal(arrays["pae"], np.asarray(want["pae"], np.float32))
    np.testing.assert_array_equal(arrays["plddt"], np.asarray(want["plddt"], np.float32))
    assert arrays["mmcif"].item().decode() == want["mmcif"] and "pdb" not in arrays
    assert meta == {k: v for k, v in want.items() if k not in ("pae", "plddt", "mmcif")}


def test_accept_header_for_the_bare_file_wins_over_pae_format(client):
    r = client.post("/v1/models/toy_folder/fold", json={**FOLD, "pae_format": "npz"},
                    headers={"Accept": "chemical/x-pdb"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("chemical/x-pdb")
    assert fold(client, pae_format="float16").status_code == 422
