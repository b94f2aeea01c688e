"""The models' own checks seen over HTTP, on a real server: an option out of range or of the wrong
type is a 422 naming it (not a 500 from inf/NaN or ``int("abc")``), and a damaged or malicious
ESMFold ``pytorch_model.bin`` is a 503 like every other family's unreadable checkpoint."""

from __future__ import annotations

import httpx
import pytest

from corrupt_files import damage
from bionemo_lite.zoo.esmfold.testing import tiny_config
from megamolbart_fixtures import NemoLayout, random_nemo_state, write_nemo_archive
from server_fixtures import serve_cli

ESM2 = "esm2_t6_8M_UR50D"


@pytest.fixture(scope="module")
def marker(tmp_path_factory):
    return tmp_path_factory.mktemp("marker") / "code-ran"


@pytest.fixture(scope="module")
def client(tmp_path_factory, esm2_fair_checkpoint, marker):
    folder = tmp_path_factory.mktemp("weights")
    layout = NemoLayout(seed=4)
    nemo = write_nemo_archive(folder / "megamolbart.nemo", layout, random_nemo_state(layout))
    esmfold = folder / "esmfold"
    tiny_config().save_pretrained(esmfold)
    (esmfold / "pytorch_model.bin").write_bytes(b"")
    damage(esmfold / "pytorch_model.bin", "code_in_torch_zip", marker)
    args = ("--weights", f"{ESM2}={esm2_fair_checkpoint}", "--weights", f"megamolbart={nemo}",
            "--weights", f"esmfold_v1={esmfold}")
    with serve_cli(tmp_path_factory.mktemp("server"), *args) as server:
        with httpx.Client(base_url=server.base_url, timeout=120) as c:
            yield c


@pytest.mark.parametrize("temperature", [1e-40, 1e-4, 1e3])
def test_esm2_generate_refuses_a_temperature_outside_its_range(client, temperature):
    r = client.post(f"/v1/models/{ESM2}/generate", json={"sequences": ["MKT<mask>AY"], "temperature": temperature})
    assert r.status_code == 422, r.text
    assert "temperature must be a finite number in [0.001, 100.0]" in r.json()["detail"]
    ok = client.post(f"/v1/models/{ESM2}/generate", json={"sequences": ["MKT<mask>AY"], "temperature": 1e-3})
    assert ok.status_code == 200, ok.text


# Wrong types are refused by the front door against the verb's signature (bionemo_lite.binding); values of
# the right type out of range by the model's own checks (bionemo_lite.options).
@pytest.mark.parametrize("options, named", [
    ({"scaled_radius": "abc"}, "option 'scaled_radius': input should be a valid number, got 'abc'"),
    ({"scaled_radius": 3}, "scaled_radius must be a finite number in [0.0, 2.0], got 3.0"),
    ({"top_p": "high"}, "option 'top_p': input should be a valid number, got 'high'"),
    ({"top_p": 1.5}, "top_p must be a finite number in (0.0, 1.0], got 1.5"),
    ({"beam_size": True}, "option 'beam_size': input should be a valid integer, got True"),
    ({"beam_size": 1000}, "beam_size must be an integer in 1..100, got 1000"),
    ({"max_rounds": 50}, "max_rounds must be an integer in 1..20, got 50"),
])
def test_megamolbart_generate_refuses_bad_options(client, options, named):
    r = client.post("/v1/models/megamolbart/generate", json={"smis": ["CCO"], "num_molecules": 2, **options})
    assert r.status_code == 422, r.text
    assert named in r.json()["detail"]


def test_megamolbart_generate_refuses_an_infinite_radius(client):
    body = '{"smis": ["CCO"], "num_molecules": 2, "scaled_radius": 1e999}'  # JSON text that parses to inf
    r = client.post("/v1/models/megamolbart/generate", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "option 'scaled_radius': input should be a finite number, got inf" in r.json()["detail"]


def test_megamolbart_generate_reports_how_many_it_found(client):
    r = client.post("/v1/models/megamolbart/generate",
                    json={"smis": ["CCO"], "num_molecules": 3, "seed": 1, "max_rounds": 2, "max_length": 6})
    assert r.status_code == 200, r.text
    (item,) = r.json()["generated"]
    stats = item["stats"]
    assert stats["requested"] == 3 and stats["shortfall"] == 3 - len(item["generated"])
    assert 1 <= stats["rounds"] <= 2 and stats["samples"] <= 3 * stats["rounds"]


def test_malicious_esmfold_weights_are_503_and_run_no_code(client, marker):
    r = client.post("/v1/models/esmfold_v1/fold", json={"sequence": "MKTAYIAK"})
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "model_unavailable"
    assert not marker.exists()
