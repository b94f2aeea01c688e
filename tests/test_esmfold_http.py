"""Complexes over HTTP: ``POST /v1/models/esmfold_v1/fold`` with ``:``-joined chains, through a real
uvicorn process (single-chain JSON, bare PDB and length limits are in test_server_fold.py)."""

from __future__ import annotations

import json
import warnings

import httpx
import numpy as np
import pytest

import bionemo_lite
from bionemo_lite.structures import parse_structure
from esmfold_fixtures import write_tiny_esmfold_dir
from server_fixtures import running_server, uvicorn_factory

pytestmark = pytest.mark.slow  # starts a server that imports transformers

NAME = "esmfold_v1"
COMPLEX = "MKTAYIAKQRQ:GSHWLVEA"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_tiny_esmfold_dir(tmp_path_factory.mktemp("esmfold") / "esmfold_tiny")


@pytest.fixture(scope="module")
def client(tmp_path_factory, weights):
    tmp = tmp_path_factory.mktemp("esmfold_http")
    env = {"BIONEMO_LITE_HOME": str(tmp / "empty-cache"), "BIONEMO_LITE_TORCH_THREADS": "1",
           "BIONEMO_LITE_WEIGHTS": json.dumps({NAME: str(weights)})}
    with running_server(uvicorn_factory("server.app:create_app"), env, tmp) as srv:
        with httpx.Client(base_url=srv.base_url, timeout=300) as c:
            yield c


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
