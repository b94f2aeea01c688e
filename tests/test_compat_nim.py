"""The NIM shapes under ``/nim``, driven with plain HTTP requests written from NVIDIA's public NIM
docs (ESM2, ESMFold, OpenFold3, MolMIM), on the shared compatibility server: the answers carry
the native API's numbers, and the documented limits are 422s."""

from __future__ import annotations

import io

import h5py
import httpx
import numpy as np
import pytest
from guided_molecule_gen import oracles

from compat_fixtures import ESM2, ESMFOLD, MEGAMOLBART, OPENFOLD, compat_server
from keys_fixtures import bearer
from megamolbart_fixtures import DRUG_SMILES

pytestmark = pytest.mark.slow  # the shared server (five tiny models)

PROTEINS = ["MKTAYIAKQRQISFVKSHFSRQ", "GSHMLEDPVK"]
SHORT = "MKTAYIAKQRQ"
SMILES = [DRUG_SMILES["aspirin"], DRUG_SMILES["paracetamol"]]
SEED = DRUG_SMILES["paracetamol"]


@pytest.fixture(scope="module")
def http(request, tmp_path_factory, trained):
    shared = compat_server(request, tmp_path_factory, trained)
    with httpx.Client(base_url=shared.base_url, timeout=300, headers=bearer(shared.keys["alice"])) as c:
        yield c


def native(http: httpx.Client, name: str, verb: str, body: dict) -> dict:
    r = http.post(f"/v1/models/{name}/{verb}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_esm2_embeddings_npz_and_h5_equal_native(http):
    expected = np.asarray(native(http, ESM2, "embed", {"sequences": PROTEINS})["embeddings"])
    r = http.post("/nim/biology/meta/esm2-650m", json={"sequences": PROTEINS, "format": "npz"})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.load(io.BytesIO(r.content))["embeddings"], expected, atol=1e-6, rtol=0)
    r = http.post("/nim/biology/meta/esm2-650m", json={"sequences": PROTEINS, "format": "h5"})
    with h5py.File(io.BytesIO(r.content)) as fh:
        np.testing.assert_allclose(fh["embeddings"][()], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("body, where", [
    ({"sequences": ["MKT"] * 33}, "sequences"),           # 1-32 sequences
    ({"sequences": ["A" * 1025]}, "sequences[0]"),         # 1-1024 residues
    ({"sequences": []}, "sequences"),
    ({"sequences": ["MKT"], "format": "csv"}, "format"),
])
def test_esm2_limits_are_422(http, body, where):
    r = http.post("/nim/biology/meta/esm2-650m", json=body)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][1] == where.split("[")[0], r.text


def test_esmfold_pdbs_equal_native_and_limit(http):
    r = http.post("/nim/biology/nvidia/esmfold", json={"sequence": SHORT})
    assert r.status_code == 200, r.text
    expected = native(http, ESMFOLD, "fold", {"sequence": SHORT})
    assert r.json()["pdbs"] == [expected["pdb"]] and r.json()["mean_plddt"] == expected["mean_plddt"]
    assert http.post("/nim/biology/nvidia/esmfold", json={"sequence": "A" * 1025}).status_code == 422


def test_openfold3_structures_with_scores(http):
    a3m = f">query\n{SHORT}\n>hit\nMKTAY-AKQRQ\n"
    body = {"inputs": [{"input_id": "p1", "diffusion_samples": 2, "output_format": "pdb", "molecules": [
        {"type": "protein", "sequence": SHORT, "msa": {"main": {"a3m": {"alignment": a3m, "format": "a3m"}}}},
        {"type": "ligand", "smiles": "CCO"}]}]}
    r = http.post("/nim/biology/openfold/openfold3/predict", json=body)
    assert r.status_code == 200, r.text
    output = r.json()["outputs"][0]
    structures = output["structures_with_scores"]
    assert output["input_id"] == "p1" and len(structures) == 2
    scores = [s["confidence_score"] for s in structures]
    assert scores == sorted(scores, reverse=True) and all(s["format"] == "pdb" for s in structures)
    expected = native(http, OPENFOLD, "fold", {"sequence": SHORT, "id": "p1", "alignments": {"A": a3m},
                                               "ligands": ["CCO"], "seed": 1})
    sample = next(s for s in structures if s["sample_seed"] == 1)
    assert sample["structure"] == expected["pdb"] and sample["ptm_score"] == expected["ptm"]
    assert sample["iptm_score"] == expected["iptm"]
    dna = {"inputs": [{"molecules": [{"type": "dna", "sequence": "ACGT"}]}]}
    r = http.post("/nim/biology/openfold/openfold3/predict", json=dna)
    assert r.status_code == 422 and "DNA and RNA" in r.json()["detail"]
    two = {"inputs": [body["inputs"][0], body["inputs"][0]]}  # at most one input
    assert http.post("/nim/biology/openfold/openfold3/predict", json=two).status_code == 422


def test_molmim_embedding_hidden_decode_equal_native(http):
    r = http.post("/nim/biology/nvidia/molmim/embedding", json={"sequences": SMILES})
    expected = native(http, MEGAMOLBART, "embed", {"sequences": SMILES})["embeddings"]
    np.testing.assert_allclose(r.json()["embeddings"], expected, atol=1e-6, rtol=0)
    hidden = http.post("/nim/biology/nvidia/molmim/hidden", json={"sequences": SMILES}).json()
    reference = native(http, MEGAMOLBART, "embed", {"sequences": SMILES, "include_hiddens": True})
    np.testing.assert_allclose(hidden["hiddens"], reference["hiddens"], atol=1e-6, rtol=0)
    assert hidden["mask"] == reference["mask"]
    decoded = http.post("/nim/biology/nvidia/molmim/decode", json=hidden).json()["generated"]
    assert decoded == native(http, MEGAMOLBART, "decode", {"hiddens": reference["hiddens"],
                                                           "mask": reference["mask"]})["generated"]


def test_molmim_sampling_and_generate(http):
    r = http.post("/nim/biology/nvidia/molmim/sampling", json={"sequences": SMILES, "num_molecules": 3,
                                                               "scaled_radius": 0.5})
    assert r.status_code == 200, r.text
    generated = r.json()["generated"]
    assert len(generated) == 2 and all(1 <= len(g) <= 3 for g in generated)
    assert http.post("/nim/biology/nvidia/molmim/sampling", json={"sequences": SMILES,
                                                                  "num_molecules": 11}).status_code == 422
    guided = {"smi": SEED, "algorithm": "CMA-ES", "num_molecules": 3, "property_name": "QED",
              "min_similarity": 0.3, "particles": 8, "iterations": 3}
    r = http.post("/nim/biology/nvidia/molmim/generate", json=guided)
    assert r.status_code == 200, r.text
    molecules = r.json()["generated"]
    smiles = [m["smiles"] for m in molecules]
    np.testing.assert_allclose([m["score"] for m in molecules], oracles.qed(smiles), atol=1e-9)
    assert min(oracles.tanimoto_similarity(smiles, SEED)) >= 0.3
    sampled = http.post("/nim/biology/nvidia/molmim/generate",
                        json={"smi": SEED, "algorithm": "none", "num_molecules": 3}).json()["generated"]
    np.testing.assert_allclose([m["score"] for m in sampled],
                               oracles.tanimoto_similarity([m["smiles"] for m in sampled], SEED), atol=1e-9)
    for bad in ({"min_similarity": 0.8}, {"property_name": "logP"}, {"minimize": True}, {"particles": 1}):
        r = http.post("/nim/biology/nvidia/molmim/generate", json={**guided, **bad})
        assert r.status_code == 422, (bad, r.text)


def test_nim_routes_take_the_servers_keys(http):
    url = str(http.base_url).rstrip("/") + "/nim/biology/nvidia/molmim/embedding"
    r = httpx.post(url, json={"sequences": SMILES})  # no key
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert httpx.post(url, json={"sequences": SMILES}, headers=bearer("wrong")).status_code == 401
