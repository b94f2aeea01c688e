"""Structure requests over HTTP: ESMFold (tiny random weights, Hugging Face layout) behind a real
uvicorn process, compared with the Python API on the same files; single chains and complexes
(``:``-joined chains) share one server."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import bionemo_lite
from bionemo_lite.structures import parse_structure
from bionemo_lite.zoo.esmfold.testing import write_tiny_esmfold_dir
from server_fixtures import running_server, uvicorn_factory

pytestmark = pytest.mark.slow  # the server imports transformers (~10 s on a busy 2-core machine)

NAME = "esmfold_v1"
SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEV"
COMPLEX = "MKTAYIAKQRQ:GSHWLVEA"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_tiny_esmfold_dir(tmp_path_factory.mktemp("esmfold") / "esmfold_tiny")


@pytest.fixture(scope="module")
def server(tmp_path_factory, weights):
    tmp = tmp_path_factory.mktemp("foldserver")
    env = {"BIONEMO_LITE_HOME": str(tmp / "empty-cache"), "BIONEMO_LITE_TORCH_THREADS": "1",
           "BIONEMO_LITE_WEIGHTS": json.dumps({NAME: str(weights)})}
    with running_server(uvicorn_factory("bionemo_lite.server.app:create_app"), env, tmp) as srv:
        yield srv


@pytest.fixture(scope="module")
def expected(weights):
    import torch

    torch.set_num_threads(1)  # as the server: same reductions, same numbers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bionemo_lite.load(NAME, weights=weights).fold(SEQ)


def test_limits_and_residues_checked_before_loading(client):
    r = client.post(f"/v1/models/{NAME}/fold", json={"sequence": "A" * 1000 + ":" + "G" * 30})
    assert r.status_code == 422 and "1030 residues" in r.json()["detail"]
    r = client.post(f"/v1/models/{NAME}/fold", json={"sequence": "MKTJAY"})
    assert r.status_code == 422 and (r.json()["record"], r.json()["position"]) == ("sequence", 4)
    assert client.get(f"/v1/models/{NAME}").json()["loaded"] is False


def test_fold_json_equals_python(client, expected):
    r = client.post(f"/v1/models/{NAME}/fold", json={"sequence": SEQ})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == NAME and body["format"] == "pdb" and body["mmcif"] is None
    np.testing.assert_allclose(body["plddt"], expected.plddt, atol=1e-4, rtol=0)
    np.testing.assert_allclose(body["pae"], expected.pae, atol=1e-4, rtol=0)
    assert body["ptm"] == pytest.approx(expected.ptm, abs=1e-5)
    assert body["mean_plddt"] == pytest.approx(expected.mean_plddt, abs=1e-4)
    got = {(a.get_parent().id[1], a.get_id()): a.coord for a in parse_structure(body["pdb"]).get_atoms()}
    want = {(a.get_parent().id[1], a.get_id()): a.coord for a in parse_structure(expected.pdb).get_atoms()}
    assert got.keys() == want.keys()
    assert max(float(np.abs(got[k] - want[k]).max()) for k in got) <= 2e-3  # PDB keeps 3 decimals


def test_bare_pdb_with_plddt_in_b_factors(client, expected):
    r = client.post(f"/v1/models/{NAME}/fold", json={"sequence": SEQ, "num_recycles": 1},
                    headers={"Accept": "chemical/x-pdb"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("chemical/x-pdb")
    cas = [a for a in parse_structure(r.text).get_atoms() if a.get_id() == "CA"]
    assert len(cas) == len(SEQ)
    assert all(0.0 <= a.bfactor <= 100.0 for a in cas)


def test_mmcif_and_bad_options(client):
    r = client.post(f"/v1/models/{NAME}/fold", json={"sequence": SEQ, "format": "mmcif", "chunk_size": 4})
    assert r.status_code == 200, r.text
    assert r.json()["pdb"] is None and r.json()["mmcif"].startswith("data_")
    r = client.post(f"/v1/models/{NAME}/fold", json={"sequence": SEQ, "ligands": ["CCO"]})
    assert r.status_code == 422 and "ligands" in r.json()["detail"]


def test_complex_json_and_bare_mmcif(client, weights):
    import torch

    torch.set_num_threads(1)  # as the server
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = bionemo_lite.load(NAME, weights=weights).fold(COMPLEX)

    r = client.post(f"/v1/models/{NAME}/fold", json={"sequence": COMPLEX.lower()})
    assert r.status_code == 200, r.text
    body = r.json()
    n = len(COMPLEX) - 1
    assert body["chains"] == ["A", "B"] and len(body["plddt"]) == n and np.array(body["pae"]).shape == (n, n)
    np.testing.assert_allclose(body["plddt"], expected.plddt, atol=1e-4, rtol=0)
    chains = {c.id: len(c) for c in parse_structure(body["pdb"])[0]}
    assert chains == {"A": 11, "B": 8}  # no linker residues

    r = client.post(f"/v1/models/{NAME}/fold", json={"sequence": COMPLEX}, headers={"Accept": "chemical/x-mmcif"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("chemical/x-mmcif")
    assert [c.id for c in parse_structure(r.text, "mmcif")[0]] == ["A", "B"]


@pytest.mark.parametrize("sequence, reason", [
    ("MKTAYIAK::GSHW", "empty"),
    ("MKTAYIAK:", "empty"),
    ("MKTAYIAK:GSJW", "'J'"),
    ("A" * 600 + ":" + "G" * 423, "1023 residues"),
])
def test_bad_complexes_are_422(client, sequence, reason):
    r = client.post(f"/v1/models/{NAME}/fold", json={"sequence": sequence})
    assert r.status_code == 422 and reason in r.json()["detail"], r.text


def test_pae_as_base64_float16_and_as_npz_equal_the_json(client, expected):
    import base64
    import io

    as_json = client.post(f"/v1/models/{NAME}/fold", json={"sequence": SEQ})
    half = client.post(f"/v1/models/{NAME}/fold", json={"sequence": SEQ, "pae_format": "base64_float16"})
    as_npz = client.post(f"/v1/models/{NAME}/fold", json={"sequence": SEQ, "pae_format": "npz"})
    assert as_json.status_code == half.status_code == as_npz.status_code == 200, (half.text, as_npz.text)
    reference = np.asarray(as_json.json()["pae"], np.float32)
    pae = half.json()["pae"]
    assert pae["dtype"] == "float16" and pae["shape"] == [len(SEQ), len(SEQ)]
    got = np.frombuffer(base64.b64decode(pae["data"]), "<f2").reshape(pae["shape"])
    np.testing.assert_allclose(got, reference, rtol=2 ** -11, atol=0)  # float16 keeps 11 significant bits
    assert half.json()["pdb"] == as_json.json()["pdb"] and half.json()["plddt"] == as_json.json()["plddt"]

    assert as_npz.headers["content-type"] == "application/x-npz"
    data = np.load(io.BytesIO(as_npz.content), allow_pickle=False)
    np.testing.assert_array_equal(data["pae"], reference)
    np.testing.assert_allclose(data["pae"], expected.pae, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(data["plddt"], np.asarray(as_json.json()["plddt"], np.float32))
    assert data["pdb"].item().decode() == as_json.json()["pdb"]
    meta = json.loads(data["metadata"].item())
    assert meta["ptm"] == as_json.json()["ptm"] and meta["chains"] == ["A"] and meta["format"] == "pdb"
    pae_json = len(json.dumps(as_json.json()["pae"], separators=(",", ":")))
    print(f"\nESMFold answer, {len(SEQ)} residues: JSON {len(as_json.content)} B (PAE {pae_json} B), "
          f"base64_float16 {len(half.content)} B (PAE {len(pae['data'])} B), npz {len(as_npz.content)} B "
          f"(PAE {data['pae'].nbytes} B)")
