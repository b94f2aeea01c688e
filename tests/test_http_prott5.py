"""ProtT5 end to end over HTTP: a real uvicorn process serving a tiny random T5 checkpoint
(Hugging Face layout, full encoder-decoder) under the ``prot_t5_xl_uniref50`` name,
checked number for number against ``bionemo_lite.load(...).embed(...)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import bionemo_lite
from bionemo_lite.zoo.prott5.testing import write_full
from server_fixtures import serve_cli

transformers = pytest.importorskip("transformers")

NAME = "prot_t5_xl_uniref50"
SEQS = [
    {"id": "p1", "sequence": "MKTAYIAKQRQISFVKSHFSRQ"},
    {"id": "p2", "sequence": "GSHMLEDPVDAFUZOB"},  # U Z O B are read as X
    {"id": "p3", "sequence": "M"},
]
PAIRS = [(s["id"], s["sequence"]) for s in SEQS]
pytestmark = pytest.mark.filterwarnings("ignore:.*is not the published.*:UserWarning")


@pytest.fixture(scope="module")
def prott5_dir(tmp_path_factory) -> Path:
    """A tiny ``T5ForConditionalGeneration`` saved as Rostlab publishes it (no spiece.model: built-in vocabulary)."""
    return write_full(tmp_path_factory.mktemp("prott5http") / "full", seed=3)


@pytest.fixture(scope="module")
def server(tmp_path_factory, prott5_dir):
    with serve_cli(tmp_path_factory.mktemp("prott5server"), "--weights", f"{NAME}={prott5_dir}", "--max-sequences", "4") as srv:
        yield srv


@pytest.fixture(scope="module")
def model(prott5_dir):
    # One thread, like the server (BIONEMO_LITE_TORCH_THREADS=1): the same summation order.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield bionemo_lite.load(NAME, weights=prott5_dir)
    torch.set_num_threads(threads)


@pytest.mark.slow  # the first request loads torch and the plugin in the server process
@pytest.mark.parametrize("pooling", ["mean", "per_residue"])
def test_embed_equals_python(client, model, pooling):
    r = client.post(f"/v1/models/{NAME}/embed", json={"sequences": SEQS, "pooling": pooling})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = model.embed(PAIRS, pooling=pooling)
    assert body["model"] == NAME and body["ids"] == ["p1", "p2", "p3"] and body["pooling"] == pooling
    assert body["dim"] == expected.dim == 32 and body["lengths"] == [22, 16, 1]
    assert body["layer"] == expected.layers[0] == 2 and body["truncated"] == [] and body["errors"] == []
    if pooling == "per_residue":
        assert [len(e) for e in body["embeddings"]] == [22, 16, 1]
        pairs = zip(body["embeddings"], expected.embeddings)
        diff = max(float(np.abs(np.array(got) - want).max()) for got, want in pairs)
    else:
        diff = float(np.abs(np.array(body["embeddings"]) - expected.embeddings).max())
    print(f"\nProtT5 HTTP vs Python ({pooling}): max abs diff {diff:.2e}")
    assert diff <= 1e-6


def test_embed_first_layer_and_plain_strings(client, model):
    r = client.post(f"/v1/models/{NAME}/embed", json={"sequences": ["MKTAYIAKQR", "GSHM"], "layer": [0, -1]})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = model.embed(["MKTAYIAKQR", "GSHM"], layer=[0, -1])
    assert body["ids"] == ["0", "1"] and body["layers"] == [0, 2]
    for layer in (0, 2):
        np.testing.assert_allclose(np.array(body["by_layer"][str(layer)]), expected.by_layer[layer], atol=1e-6, rtol=0)


def test_bos_pooling_is_422_naming_the_allowed_poolings(client):
    r = client.post(f"/v1/models/{NAME}/embed", json={"sequences": SEQS, "pooling": "bos"})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "invalid_input"
    assert "'bos'" in body["detail"] and "mean" in body["detail"] and "per_residue" in body["detail"]


def test_invalid_residue_and_limits(client):
    r = client.post(f"/v1/models/{NAME}/embed", json={"sequences": [{"id": "bad", "sequence": "MKT1A"}]})
    assert r.status_code == 422 and (r.json()["record"], r.json()["position"]) == ("bad", 4)
    r = client.post(f"/v1/models/{NAME}/embed", json={"sequences": ["MKT"] * 5})
    assert r.status_code == 422 and "at most 4" in r.json()["detail"]
    # ProtT5 embeds only: the other verbs are a 404 naming the verbs it has
    r = client.post(f"/v1/models/{NAME}/score", json={"sequences": ["MKT"]})
    assert r.status_code == 404 and r.json()["error"] == "unsupported_verb" and r.json()["verbs"] == ["embed"]
