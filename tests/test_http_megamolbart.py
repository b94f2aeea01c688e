"""MegaMolBART end to end over HTTP: a real uvicorn process serving the tiny model trained in
test_megamolbart_trained.py (saved as a ``.nemo`` archive), checked against the Python API.

embed (masked-mean embeddings, per-token hiddens), decode (hiddens + mask back to the
training molecules), generate (seeded, unique valid SMILES with properties and stats),
score (log-likelihoods) and the error answers for SMILES input.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import bionemo_lite
from bionemo_lite import chem
from megamolbart_fixtures import DRUG_SMILES, UNPARSABLE_SMILES
from server_fixtures import serve_cli

pytestmark = pytest.mark.slow  # needs the trained model (~30 s once per session) and a server
NAME = "megamolbart"
MAX_SEQUENCES = 16
MOLECULES = {name: DRUG_SMILES[name] for name in
             ("aspirin", "caffeine", "ibuprofen", "paracetamol", "lidocaine", "vanillin", "procaine", "atenolol")}
PAIRS = list(MOLECULES.items())
ITEMS = [{"id": k, "sequence": v} for k, v in PAIRS]


@pytest.fixture(scope="module")
def nemo(trained, tmp_path_factory) -> Path:
    model, _ = trained
    return model.save_nemo(tmp_path_factory.mktemp("mmbhttp") / "tiny_megamolbart.nemo")


@pytest.fixture(scope="module")
def server(tmp_path_factory, nemo):
    args = ("--weights", f"{NAME}={nemo}", "--max-sequences", str(MAX_SEQUENCES))
    with serve_cli(tmp_path_factory.mktemp("mmbserver"), *args) as srv:
        yield srv


@pytest.fixture(scope="module")
def model(nemo):
    # One thread, like the server (BIONEMO_LITE_TORCH_THREADS=1): the same summation order.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield bionemo_lite.load(NAME, weights=nemo)
    torch.set_num_threads(threads)


def padded(rows: list[list[list[float]]]) -> tuple[list, list]:
    """Ragged per-token hiddens as BioNeMo's ``hiddens`` [B, T, D] (zeros on padding) + ``mask`` [B, T]."""
    width, dim = max(len(r) for r in rows), len(rows[0][0])
    hiddens = [r + [[0.0] * dim] * (width - len(r)) for r in rows]
    mask = [[True] * len(r) + [False] * (width - len(r)) for r in rows]
    return hiddens, mask


# ---------------------------------------------------------------- embed
def test_embed_is_the_masked_mean_and_equals_python(client, model):
    r = client.post(f"/v1/models/{NAME}/embed", json={"sequences": ITEMS})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = model.embed(PAIRS)
    assert body["model"] == NAME and body["ids"] == list(MOLECULES) and body["pooling"] == "mean"
    assert body["dim"] == expected.dim == 64 and body["lengths"] == expected.lengths and body["errors"] == []
    got = np.array(body["embeddings"])
    print(f"\nMegaMolBART HTTP vs Python embed: max abs diff {np.abs(got - expected.embeddings).max():.2e}")
    np.testing.assert_allclose(got, expected.embeddings, atol=1e-6, rtol=0)
    # the mean runs over the molecule's own tokens only, never the padding of a shorter molecule
    hiddens, mask = model.encode(list(MOLECULES.values()))
    assert not mask.all()  # the batch really is padded
    masked_mean = np.stack([h[m].mean(0) for h, m in zip(hiddens, mask)])
    np.testing.assert_allclose(got, masked_mean, atol=1e-6, rtol=0)
    assert np.abs(got - hiddens.mean(1)).max() > 1e-3  # what averaging the padding in would give


def test_embed_accepts_smis_and_plain_strings(client, model):
    smis = list(MOLECULES.values())[:3]
    r = client.post(f"/v1/models/{NAME}/embed", json={"smis": smis})
    assert r.status_code == 200, r.text
    assert r.json()["ids"] == ["0", "1", "2"]
    np.testing.assert_allclose(np.array(r.json()["embeddings"]), model.embed(smis).embeddings, atol=1e-6, rtol=0)


def test_per_token_hiddens_decode_back_to_the_training_molecules(client, model):
    r = client.post(f"/v1/models/{NAME}/embed", json={"sequences": ITEMS, "pooling": "per_residue"})
    assert r.status_code == 200, r.text
    rows = r.json()["embeddings"]
    hiddens, mask = model.encode(list(MOLECULES.values()))
    assert [len(row) for row in rows] == mask.sum(1).tolist() == r.json()["lengths"]
    for row, h, m in zip(rows, hiddens, mask):
        np.testing.assert_allclose(np.array(row), h[m], atol=1e-6, rtol=0)

    request_hiddens, request_mask = padded(rows)
    d = client.post(f"/v1/models/{NAME}/decode", json={"hiddens": request_hiddens, "mask": request_mask})
    assert d.status_code == 200, d.text
    decoded = d.json()["generated"]
    assert d.json()["model"] == NAME and decoded == model.decode(hiddens, mask)
    canonical = [chem.canonical_smiles(s) for s in MOLECULES.values()]
    hits = sum(chem.try_canonical(s) == c for s, c in zip(decoded, canonical))
    assert hits / len(canonical) >= 0.9, list(zip(decoded, canonical))


def test_decode_hiddens_from_python_greedy_and_beam(client, model):
    smis = list(MOLECULES.values())[:4]
    hiddens, mask = model.encode(smis)
    body = {"hiddens": hiddens.tolist(), "mask": mask.astype(int).tolist()}  # 0/1 masks are accepted too
    greedy = client.post(f"/v1/models/{NAME}/decode", json=body)
    assert greedy.status_code == 200, greedy.text
    assert greedy.json()["generated"] == model.decode(hiddens, mask)
    beam = client.post(f"/v1/models/{NAME}/decode", json={**body, "method": "beam", "beam_size": 3})
    assert beam.status_code == 200, beam.text
    assert beam.json()["generated"] == model.decode(hiddens, mask, method="beam", beam_size=3)
    assert [chem.try_canonical(s) for s in beam.json()["generated"]] == [chem.canonical_smiles(s) for s in smis]


def test_decode_errors_are_422(client, model):
    hiddens, mask = model.encode(["CCO"])
    narrow = client.post(f"/v1/models/{NAME}/decode",
                         json={"hiddens": hiddens[:, :, :8].tolist(), "mask": mask.tolist()})
    assert narrow.status_code == 422 and narrow.json()["record"] == 0 and "width 64" in narrow.json()["reason"]
    empty = client.post(f"/v1/models/{NAME}/decode", json={"hiddens": hiddens.tolist(), "mask": [[False] * 3]})
    assert empty.status_code == 422 and "no position" in empty.json()["detail"]
    shape = client.post(f"/v1/models/{NAME}/decode", json={"hiddens": hiddens.tolist(), "mask": [[True] * 2]})
    assert shape.status_code == 422 and shape.json()["error"] == "invalid_request"
    method = client.post(f"/v1/models/{NAME}/decode",
                         json={"hiddens": hiddens.tolist(), "mask": mask.tolist(), "method": "sideways"})
    assert method.status_code == 422 and "greedy, beam" in method.json()["detail"]


# ---------------------------------------------------------------- generate
GENERATE = {"smis": ["CC(=O)Oc1ccccc1C(=O)O", "CC(=O)Nc1ccc(O)cc1"], "num_molecules": 10, "scaled_radius": 1.0,
            "method": "topkp-perturbate", "top_k": 8, "seed": 11}


def test_generate_returns_unique_valid_molecules_with_properties_and_stats(client, model):
    r = client.post(f"/v1/models/{NAME}/generate", json=GENERATE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == NAME and body["errors"] == [] and [g["id"] for g in body["generated"]] == ["0", "1"]
    for item, seed in zip(body["generated"], GENERATE["smis"]):
        assert item["seed"] == chem.canonical_smiles(seed)
        assert item["generated"], f"nothing valid generated for {seed}"
        assert len(set(item["generated"])) == len(item["generated"])
        assert all(chem.canonical_smiles(s) == s for s in item["generated"])
        assert set(item["properties"]) == {"qed", "logp", "tanimoto"}
        props = (item["properties"][k] for k in ("qed", "logp", "tanimoto"))
        for smi, qed, logp, sim in zip(item["generated"], *props):
            mol = chem.parse_smiles(smi)
            assert qed == pytest.approx(chem.qed(mol)) and logp == pytest.approx(chem.logp(mol))
            assert sim == pytest.approx(chem.tanimoto(mol, chem.parse_smiles(item["seed"])))
        stats = item["stats"]
        assert stats["requested"] == 10 and stats["valid"] + stats["invalid"] == stats["samples"]
        assert stats["unique"] + stats["duplicates"] == stats["valid"] and stats["unique"] == len(item["generated"])
    options = {k: v for k, v in GENERATE.items() if k != "smis"}
    expected = model.generate(GENERATE["smis"], **options).to_dict()["generated"]
    for got, want in zip(body["generated"], expected):
        assert (got["generated"], got["stats"], got["properties"]) == (want["generated"], want["stats"],
                                                                        want["properties"])
        np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-5, rtol=0)


def test_generate_is_deterministic_with_a_seed(client):
    request = {**GENERATE, "method": "greedy-perturbate", "num_molecules": 6, "scaled_radius": 2.0}
    first, again = (client.post(f"/v1/models/{NAME}/generate", json=request) for _ in range(2))
    assert first.status_code == again.status_code == 200, first.text
    assert first.json() == again.json()
    other = client.post(f"/v1/models/{NAME}/generate", json={**request, "seed": 12})
    assert other.status_code == 200 and other.json() != first.json()
    beam = client.post(f"/v1/models/{NAME}/generate",
                       json={**request, "method": "beam-search-perturbate", "beam_size": 2})
    assert beam.status_code == 200, beam.text
    assert all(g["stats"]["requested"] == 6 for g in beam.json()["generated"])


def test_generate_limits_and_bad_options(client):
    too_many = client.post(f"/v1/models/{NAME}/generate", json={**GENERATE, "num_molecules": 101})
    assert too_many.status_code == 422 and too_many.json()["error"] == "invalid_request"
    assert "num_molecules" in too_many.json()["detail"] or "num_samples" in too_many.json()["detail"]
    method = client.post(f"/v1/models/{NAME}/generate", json={**GENERATE, "method": "sideways"})
    assert method.status_code == 422 and "greedy-perturbate" in method.json()["detail"]
    radius = client.post(f"/v1/models/{NAME}/generate", json={**GENERATE, "scaled_radius": -1})
    assert radius.status_code == 422 and "scaled_radius" in radius.json()["detail"]
    unknown = client.post(f"/v1/models/{NAME}/generate", json={**GENERATE, "colour": "blue"})
    assert unknown.status_code == 422 and "'colour'" in unknown.json()["detail"]


@pytest.mark.parametrize("option, value, why", [
    ("scaled_radius", "abc", "valid number"),  # reached the model as a str: a 500
    ("top_p", "0.9", "valid number"),
    ("beam_size", "5", "valid integer"),
    ("canonicalize", 0, "valid boolean"),
    ("on_invalid", "ignore", "'error' or 'skip'"),
])
def test_generate_family_options_are_checked_against_the_verb(client, option, value, why):
    r = client.post(f"/v1/models/{NAME}/generate", json={**GENERATE, option: value})
    assert r.status_code == 422, r.text
    assert f"option {option!r}" in r.json()["detail"] and why in r.json()["detail"]


def test_non_finite_family_options_are_refused(client, model):
    body = json.dumps({**GENERATE, "scaled_radius": 1.0}).replace('"scaled_radius": 1.0', '"scaled_radius": Infinity')
    r = client.post(f"/v1/models/{NAME}/generate", content=body.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 422 and "option 'scaled_radius'" in r.json()["detail"], r.text
    assert "finite number" in r.json()["detail"]
    hiddens, mask = model.encode(["CCO"])
    body = json.dumps({"hiddens": hiddens.tolist(), "mask": mask.tolist(), "method": "beam", "length_penalty": 0.5})
    body = body.replace('"length_penalty": 0.5', '"length_penalty": NaN')
    r = client.post(f"/v1/models/{NAME}/decode", content=body.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 422 and "option 'length_penalty'" in r.json()["detail"], r.text


# ---------------------------------------------------------------- score
def test_score_equals_python(client, model):
    r = client.post(f"/v1/models/{NAME}/score", json={"sequences": ITEMS})
    assert r.status_code == 200, r.text
    expected = model.score(PAIRS)
    diff = np.abs(np.array(r.json()["scores"]) - expected.scores).max()
    print(f"\nMegaMolBART HTTP vs Python score: max abs diff {diff:.2e}")
    assert r.json()["ids"] == list(MOLECULES) and r.json()["method"] == "loglik" == expected.method
    np.testing.assert_allclose(r.json()["scores"], expected.scores, atol=1e-5, rtol=0)
    assert all(s < 0 for s in r.json()["scores"])
    per_token = client.post(f"/v1/models/{NAME}/score", json={"smis": ["CCO"], "method": "loglik_per_token"})
    assert per_token.status_code == 200, per_token.text
    np.testing.assert_allclose(per_token.json()["scores"], model.score(["CCO"], method="loglik_per_token").scores,
                               atol=1e-5, rtol=0)


# ---------------------------------------------------------------- SMILES errors
@pytest.mark.parametrize("verb", ["embed", "score", "generate"])
@pytest.mark.parametrize("case", ["unclosed_ring", "open_aromatic"])
def test_unparsable_smiles_is_422_naming_the_record(client, verb, case):
    bad = UNPARSABLE_SMILES[case]
    body = {"sequences": [{"id": "ok", "sequence": "CCO"}, {"id": case, "sequence": bad}]}
    r = client.post(f"/v1/models/{NAME}/{verb}", json=body)
    assert r.status_code == 422, r.text
    answer = r.json()
    assert answer["error"] == "invalid_input" and answer["record"] == case
    assert repr(bad) in answer["reason"]
    assert "cannot be parsed" in answer["reason"] or "not a valid" in answer["reason"]
    assert case in answer["detail"]


def test_smiles_are_not_checked_as_proteins(client):
    # brackets, charges, digits, lowercase aromatic atoms: all fine for a SMILES model
    smis = ["Cc1ncc([N+](=O)[O-])n1CCO", "NCCc1c[nH]c2ccc(O)cc12", "C[C@H](CS)C(=O)N1CCC[C@H]1C(=O)O"]
    for verb in ("embed", "score"):
        r = client.post(f"/v1/models/{NAME}/{verb}", json={"smis": smis})
        assert r.status_code == 200, (verb, r.text)
    long = client.post(f"/v1/models/{NAME}/embed", json={"smis": ["C" * 200]})  # 200 tokens > 64 positions
    assert long.status_code == 422 and long.json()["record"] == "0" and "64" in long.json()["reason"]


def test_too_many_molecules_is_422(client):
    r = client.post(f"/v1/models/{NAME}/embed", json={"smis": ["CCO"] * (MAX_SEQUENCES + 1)})
    assert r.status_code == 422 and f"at most {MAX_SEQUENCES}" in r.json()["detail"]
    r = client.post(f"/v1/models/{NAME}/score", json={"smis": ["CCO"] * (MAX_SEQUENCES + 1)})
    assert r.status_code == 422 and f"at most {MAX_SEQUENCES}" in r.json()["detail"]
    hiddens = [[[0.0] * 64]] * (MAX_SEQUENCES + 1)
    r = client.post(f"/v1/models/{NAME}/decode", json={"hiddens": hiddens, "mask": [[True]] * (MAX_SEQUENCES + 1)})
    assert r.status_code == 422 and f"at most {MAX_SEQUENCES}" in r.json()["detail"]


def test_embed_include_hiddens_is_bionemo_hiddens_and_mask_for_decode(client, model):
    r = client.post(f"/v1/models/{NAME}/embed", json={"smis": list(MOLECULES.values()), "include_hiddens": True})
    assert r.status_code == 200, r.text
    hiddens, mask = model.encode(list(MOLECULES.values()))
    got_h, got_m = np.array(r.json()["hiddens"], dtype=np.float32), np.array(r.json()["mask"])
    assert got_m.tolist() == mask.tolist()
    np.testing.assert_allclose(got_h[got_m], hiddens[mask], atol=1e-6, rtol=0)
    d = client.post(f"/v1/models/{NAME}/decode", json={"hiddens": r.json()["hiddens"], "mask": r.json()["mask"]})
    assert d.status_code == 200, d.text
    assert d.json()["generated"] == model.decode(hiddens, mask)
