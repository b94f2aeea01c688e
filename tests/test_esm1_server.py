"""The ESM-1v ensemble over HTTP: a real uvicorn process started as users start it, with the
ensemble's weights given as one folder, checked number for number against the Python API."""

from __future__ import annotations

import numpy as np
import pytest

from bionemo_lite.zoo.esm1 import ENSEMBLE
from esm1_fixtures import ensemble_folder, load_quietly  # noqa: F401  (fixtures)
from esm2_fixtures import SEQUENCES
from server_fixtures import serve_cli

pytestmark = pytest.mark.slow  # one server start and the first load of five models: ~15 s
WT = SEQUENCES["mid"]
MUTATIONS = ["M1A", "K2W", "A4G:Y5F"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, ensemble_folder):
    with serve_cli(tmp_path_factory.mktemp("esm1server"), "--weights", f"{ENSEMBLE}={ensemble_folder}") as srv:
        yield srv


def test_masked_marginals_equal_python(client, ensemble_folder):
    r = client.post(f"/v1/models/{ENSEMBLE}/score",
                    json={"sequences": [WT], "method": "masked_marginals", "mutations": MUTATIONS})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = load_quietly(ENSEMBLE, ensemble_folder).score(WT, method="masked_marginals", mutations=MUTATIONS)
    assert body["ids"] == MUTATIONS and not body["errors"]
    np.testing.assert_allclose(body["scores"], expected.scores, rtol=0, atol=1e-6)


def test_embed_is_refused_with_the_projects_error_body(client):
    r = client.post(f"/v1/models/{ENSEMBLE}/embed", json={"sequences": [WT]})
    assert r.status_code == 404, r.text
    body = r.json()
    assert body["error"] == "unsupported_verb" and body["verbs"] == ["score"] and body["request_id"]
