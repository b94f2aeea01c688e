"""NVIDIA's own BioNeMo service client (``bionemo==0.3.1.post2``), unmodified, against
``/bionemo/v1`` of a real server: every method whose model family we host returns the numbers
of the native API (or of the Python API, for what no native route gives: ESM-2's logits),
the guided-generation package's oracles agree with our scores, and what we do not host is the
client's own error class naming what we do."""

from __future__ import annotations

import threading
import time
import warnings

import httpx
import numpy as np
import pytest
import torch
from bionemo.api import BionemoClient
from bionemo.api.error import AuthorizationError, IncorrectParamsError, RequestIDNotFoundError
from guided_molecule_gen import oracles

import bionemo_lite
from compat_fixtures import ESM1, ESM2, ESMFOLD, MEGAMOLBART, OPENFOLD, compat_server
from keys_fixtures import bearer
from megamolbart_fixtures import DRUG_SMILES

pytestmark = pytest.mark.slow  # a server with five tiny models (and the trained MegaMolBART)

PROTEINS = ["MKTAYIAKQRQISFVKSHFSRQ", "GSHMLEDPVK", "MKVLAAGIVG"]
SMILES = [DRUG_SMILES[k] for k in ("aspirin", "paracetamol", "caffeine")]
SEED = DRUG_SMILES["paracetamol"]
SHORT = "MKTAYIAKQRQ"


@pytest.fixture(scope="module")
def shared(request, tmp_path_factory, trained):
    return compat_server(request, tmp_path_factory, trained)


@pytest.fixture(scope="module")
def client(shared) -> BionemoClient:
    return BionemoClient(api_key=shared.keys["alice"], api_host=shared.bionemo_host, timeout_secs=120)


@pytest.fixture(scope="module")
def http(shared):
    with httpx.Client(base_url=shared.base_url, timeout=300, headers=bearer(shared.keys["alice"])) as c:
        yield c


def native(http: httpx.Client, name: str, verb: str, body: dict) -> dict:
    r = http.post(f"/v1/models/{name}/{verb}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------- keys and models
def test_list_models_and_keys(shared, client):
    models = {m["name"]: m for m in client.list_models()}
    assert {"esm2-650m", "esm1nv", "megamolbart", "esmfold", "openfold"} <= set(models)
    assert models["esm1nv"]["served_by"] == ESM1 and models["esm2-650m"]["weights_available"] is True
    assert client.verify_key() is True
    with pytest.raises(AuthorizationError, match="401"):  # the client checks the key in its constructor
        BionemoClient(api_key="not-a-key", api_host=shared.bionemo_host)
    other = BionemoClient(api_key=shared.keys["bob"], api_host=shared.bionemo_host)
    other.api_key, other.headers["Authorization"] = "x", "Bearer wrong"
    assert other.verify_key() is False


# ---------------------------------------------------------------- embeddings
def test_esm2_sync_equals_native(shared, client, http):
    got = client.esm2_sync(PROTEINS, model="650m")
    mean = np.asarray(native(http, ESM2, "embed", {"sequences": PROTEINS})["embeddings"])
    per_residue = native(http, ESM2, "embed", {"sequences": PROTEINS, "pooling": "per_residue"})["embeddings"]
    torch.set_num_threads(1)  # the server's: the same summation order
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logits = bionemo_lite.load(ESM2, weights=shared.weights[ESM2]).logits(PROTEINS)
    import esm  # fair-esm: the tokens the service's ESM-2 gave

    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    for i, (seq, out) in enumerate(zip(PROTEINS, got)):
        # the client stripped BOS, EOS and padding: one row per residue is left
        assert out["tokens"].tolist() == [alphabet.get_idx(a) for a in seq]
        np.testing.assert_allclose(out["embeddings"], mean[i], atol=1e-6, rtol=0)
        np.testing.assert_allclose(out["representations"], np.asarray(per_residue[i]), atol=1e-6, rtol=0)
        np.testing.assert_allclose(out["logits"], logits[i][1:-1], atol=1e-5, rtol=0)
    with pytest.raises(IncorrectParamsError, match="position 4"):  # the native 422, as the client's 400
        client.esm2_sync(["MKTJAY"])


def test_esm1nv_and_megamolbart_embeddings_equal_native(shared, client, http):
    got = client.esm1nv_sync(PROTEINS)
    np.testing.assert_allclose(np.stack(got), native(http, ESM1, "embed", {"sequences": PROTEINS})["embeddings"],
                               atol=1e-6, rtol=0)
    r = http.post("/bionemo/v1/protein-embedding/esm1nv/embeddings", json={"sequence": PROTEINS[:1]})
    assert r.headers["x-served-by"] == ESM1  # which variant answers esm1nv
    got = client.megamolbart_embeddings_sync(SMILES)
    expected = native(http, MEGAMOLBART, "embed", {"sequences": SMILES})["embeddings"]
    np.testing.assert_allclose(np.stack(got), expected, atol=1e-6, rtol=0)


# ---------------------------------------------------------------- generation
def test_megamolbart_unguided_generate_sync_scores_are_tanimoto(client):
    out = client.megamolbart_unguided_generate_sync(SEED, num_samples=5, scaled_radius=0.5)
    assert 1 <= len(out["generated_molecules"]) <= 5 and len(out["scores"]) == len(out["generated_molecules"])
    # the guided-generation package's own Tanimoto (Morgan r=2) of each molecule to the seed
    expected = oracles.tanimoto_similarity(out["generated_molecules"], SEED)
    np.testing.assert_allclose(out["scores"], expected, atol=1e-9)


def test_guided_generation_cma_es_scores_are_the_packages_qed(client):
    rid = client._guided_mol_generate_dispatch("megamolbart", SEED, "QED", iterations=3, num_samples=4,
                                               particles=8, min_similarity=0.3)
    out = client._wait_for_generation(rid)
    molecules = out["generated_molecules"]
    assert 1 <= len(molecules) <= 4
    np.testing.assert_allclose(out["scores"], oracles.qed(molecules), atol=1e-9)
    assert out["scores"] == sorted(out["scores"], reverse=True)  # best first
    assert min(oracles.tanimoto_similarity(molecules, SEED)) >= 0.3
    with pytest.raises(IncorrectParamsError, match="minimize"):
        client._submit_request("megamolbart", f"{client.api_host}/molecule/megamolbart/generate",
                               {"smi": SEED, "algorithm": "CMA-ES", "property_name": "QED", "minimize": True},
                               None)


def test_async_tasks_status_result_list_cancel_delete(shared, client):
    rid = client.megamolbart_unguided_generate_async(SEED, num_samples=3)
    assert client.fetch_task_status(rid) == "DONE"  # short: done before the id came back
    out = client.fetch_result(rid)
    np.testing.assert_allclose(out["scores"], oracles.tanimoto_similarity(out["generated_molecules"], SEED),
                               atol=1e-9)
    listed = client.fetch_tasks(number_of_tasks=50)
    assert rid.correlation_id in [t["correlation_id"] for t in listed]
    assert client.cancel_task(rid)["control_info"]["status"] == "DONE"  # finished: cancelling changes nothing
    # another key sees none of it
    bob = BionemoClient(api_key=shared.keys["bob"], api_host=shared.bionemo_host)
    assert rid.correlation_id not in [t["correlation_id"] for t in bob.fetch_tasks(50)]
    with pytest.raises(RequestIDNotFoundError):
        bob.fetch_task_status(rid)
    assert client.delete_task(rid)["deleted"] is True
    with pytest.raises(RequestIDNotFoundError, match=rid.correlation_id):
        client.fetch_task_status(rid.correlation_id)


# ---------------------------------------------------------------- structures
def test_esmfold_sync_and_async_equal_native(client, http):
    pdb = client.esmfold_sync(SHORT)
    expected = native(http, ESMFOLD, "fold", {"sequence": SHORT})
    assert pdb == expected["pdb"] and pdb.startswith(("HEADER", "ATOM", "PARENT", "MODEL"))
    rid = client.esmfold_async(SHORT)
    assert client.fetch_result(rid) == expected["pdb"]
    job = http.get(f"/v1/jobs/{rid.correlation_id}")  # the task is a job of the service's durable job store
    assert job.status_code == 200 and (job.json()["verb"], job.json()["state"]) == ("fold", "done")
    with pytest.raises(IncorrectParamsError, match="position 4"):  # checked at submission, no task made
        client.esmfold_async("MKTJAY")


def test_openfold_sync_with_msa_upload_equals_native(tmp_path, client, http):
    a3m = f">query\n{SHORT}\n>hit1\n{SHORT[:-2]}GG\n>hit2\nMKTAY-AKQRQ\n"
    paths = [tmp_path / "uniref.a3m", tmp_path / "bfd.a3m"]
    paths[0].write_text(a3m)
    paths[1].write_text(f">query\n{SHORT}\n>hit3\nMKSAYIAKQRQ\n")
    rid = client.openfold_async(SHORT, msas=[str(p) for p in paths], use_msa=True, relax_prediction=False)
    pdb = client.fetch_result(rid)
    # fold jobs apply no MSA (server/jobs/execute.py build_task): this task ran in the service's process
    assert http.get(f"/v1/jobs/{rid.correlation_id}").status_code == 404
    merged = a3m + ">hit3\nMKSAYIAKQRQ\n"
    expected = native(http, OPENFOLD, "fold", {"sequence": SHORT, "alignments": merged})
    assert pdb == expected["pdb"]
    single = native(http, OPENFOLD, "fold", {"sequence": SHORT})
    assert single["pdb"] != expected["pdb"]  # the alignments did reach the model
    paths[1].write_bytes(b"\xff\xfe not a3m")
    with pytest.raises(IncorrectParamsError, match="bfd.a3m is not UTF-8"):
        client.openfold_async(SHORT, msas=[str(p) for p in paths])


# ---------------------------------------------------------------- what is not hosted
@pytest.mark.parametrize("call", [
    lambda c, f: c.alphafold2_sync(SHORT),
    lambda c, f: c.protgpt2_sync(),
    lambda c, f: c.diffdock_sync(f, f),
    lambda c, f: c.msa_sync(SHORT, ["uniref90"]),
    lambda c, f: c.moflow_unguided_generate_sync(SEED),
    lambda c, f: c.molmim_unguided_generate_sync(SEED, 2),
    lambda c, f: c.molmim_embeddings_sync([SEED]),
    lambda c, f: c.moflow_decode_sync([np.zeros(6800, np.float32)]),
    lambda c, f: c.get_uniprot("P69905"),
    lambda c, f: c.get_smiles("2244"),
], ids=["alphafold2", "protgpt2", "diffdock", "msa", "moflow", "molmim", "molmim_embed", "moflow_decode",
        "uniprot", "pubchem"])
def test_models_not_hosted_are_the_clients_error_naming_what_is(tmp_path, client, call):
    dummy = tmp_path / "x.pdb"
    dummy.write_text("END\n")
    with pytest.raises(IncorrectParamsError, match="model_not_hosted") as info:
        call(client, str(dummy))
    assert "esm2-650m" in str(info.value) and "megamolbart" in str(info.value)


def test_a_slow_task_can_be_cancelled(shared, client):
    """A guided search long enough to outlast the submission's wait: polled PROCESSING after the client's
    5 s poll interval, then cancelled."""
    rid = client._guided_mol_generate_dispatch("megamolbart", SEED, "QED", iterations=1000, num_samples=4,
                                               particles=50, min_similarity=0.0)
    assert client.fetch_task_status(rid) in ("SUBMITTED", "PROCESSING")
    time.sleep(5.5)  # the client's poll interval on its kept-alive connection: still open (uvicorn's 5 s reset it)
    assert client.fetch_task_status(rid) == "PROCESSING"
    client.cancel_task(rid)
    done = threading.Event()

    def poll() -> None:
        while client.fetch_task_status(rid) not in ("CANCEL", "ERROR", "DONE"):
            pass
        done.set()

    threading.Thread(target=poll, daemon=True).start()
    assert done.wait(30) and client.fetch_task_status(rid) == "CANCEL"
    with pytest.raises(ValueError, match="CANCEL"):
        client.fetch_result(rid)
