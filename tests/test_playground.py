"""The playground in a real browser: Debian's chromium under Playwright, against a real uvicorn
server on tiny checkpoints (random ESM-2 and ESMFold; the MegaMolBART the session trains on drugs).

Each panel runs end to end through the page: what it shows is checked against the same
request sent to the API directly, the canvases are drawn (their screenshots hold many
colours), a bad input shows the API's 422 sentence verbatim, and the controls work from the
keyboard. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import csv
import io
import re

import httpx
import numpy as np
import pytest

from esm2_fixtures import ESM2_NAME
from playground_fixtures import CHROMIUM_ARGS, chromium_path, distinct_colours, save_artifact
from server_fixtures import serve_cli

pytestmark = pytest.mark.slow  # one server and one browser for the module
AA = "ACDEFGHIKLMNPQRSTVWY"
FOLD_SEQUENCE = "MKTAYIAKQRQISF"
WILD_TYPE = "MKTAYIAKQR"


@pytest.fixture(scope="module")
def server(tmp_path_factory, esm2_fair_checkpoint, trained):
    from bionemo_lite.zoo.esmfold.testing import tiny_checkpoint as tiny_esmfold

    folder = tmp_path_factory.mktemp("playground")
    # MegaMolBART: the tiny model the session trains on drugs (conftest `trained`), as random weights
    # decode almost no valid molecule and the grid would stay empty.
    weights = {ESM2_NAME: esm2_fair_checkpoint, "esmfold_v1": tiny_esmfold(folder / "fold"),
               "megamolbart": trained[0].save_nemo(folder / "megamolbart.nemo")}
    args = [a for name, path in weights.items() for a in ("--weights", f"{name}={path}")]
    with serve_cli(folder / "server", *args) as srv:
        assert srv.wait_ready(120).status_code == 200
        yield srv


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(str(exc)))
    pg.goto(server.base_url + "/")  # redirects to /playground/
    pg.wait_for_selector("body[data-ready=true]")
    yield pg
    context.close()
    assert not problems, f"JavaScript errors on the page: {problems}"


def api(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(server.base_url + path, json=body, timeout=120)


def run_panel(page, panel: str) -> None:
    """Open the panel's tab and submit its form from the keyboard (Enter on the focused button)."""
    page.click(f"#tab-{panel}")
    page.evaluate(f"document.getElementById('{panel}-result') && delete document.getElementById('{panel}-result').dataset.done")
    page.focus(f"#{panel}-run")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#{panel}-result[data-done]", timeout=120_000)


def drawn(page, selector: str, name: str, at_least: int = 8) -> None:
    png = page.locator(selector).screenshot()
    save_artifact(name, png)
    assert distinct_colours(png) >= at_least, f"{selector} looks blank ({distinct_colours(png)} colours)"


def test_root_redirects_to_the_page_and_vendored_3dmol_is_served(server):
    r = httpx.get(server.base_url + "/", follow_redirects=False)
    assert r.status_code in (307, 302) and r.headers["location"] == "/playground/"
    js = httpx.get(server.base_url + "/playground/vendor/3Dmol-min.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript") and len(js.content) > 100_000
    assert httpx.get(server.base_url + "/playground/../app.py").status_code == 404


def test_tabs_move_with_arrow_keys(page):
    page.focus("#tab-fold")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "tab-embed"
    assert page.is_visible("#panel-embed") and not page.is_visible("#panel-fold")
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.id") == "tab-jobs"


def test_fold_panel(page, server):
    page.fill("#fold-input", FOLD_SEQUENCE)
    run_panel(page, "fold")
    direct = api(server, "/v1/models/esmfold_v1/fold", {"sequence": FOLD_SEQUENCE, "format": "pdb"}).json()
    assert page.text_content("#fold-ptm") == f"{direct['ptm']:.3f}"
    drawn(page, "#fold-pae", "fold-pae.png")
    drawn(page, "#fold-plddt", "fold-plddt.png")
    drawn(page, "#fold-viewer", "fold-structure.png")  # WebGL through 3Dmol.js
    assert page.locator("#fold-legend li").count() == 4
    with page.expect_download() as info:
        page.click("#fold-pdb")
    pdb = open(info.value.path()).read()
    assert pdb == direct["pdb"]
    with page.expect_download() as info:
        page.click("#fold-mmcif")
    assert info.value.suggested_filename.endswith(".cif") and open(info.value.path()).read().startswith("data_")
    save_artifact("playground-fold.png", page.screenshot(full_page=True))


def test_fold_bad_input_shows_the_422_sentence(page, server):
    page.fill("#fold-input", "MKT1AY")
    page.click("#tab-fold")
    page.click("#fold-run")
    direct = api(server, "/v1/models/esmfold_v1/fold", {"sequence": "MKT1AY", "format": "pdb"})
    assert direct.status_code == 422
    page.wait_for_function("document.getElementById('fold-error').textContent.length > 0")
    assert page.text_content("#fold-error") == direct.json()["detail"]
    assert "position 4" in direct.json()["detail"]


def test_embed_panel(page, server):
    run_panel(page, "embed")
    ids = page.locator("#embed-neighbours tbody tr td:first-child").all_text_contents()
    nearest = page.locator("#embed-neighbours tbody tr td:nth-child(2)").all_text_contents()
    records = [{"id": i, "sequence": s} for i, s in re.findall(r">(\S+)\n(\S+)", page.input_value("#embed-input"))]
    direct = api(server, f"/v1/models/{ESM2_NAME}/embed", {"sequences": records, "pooling": "mean"}).json()
    x = np.asarray(direct["embeddings"])
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    assert ids == direct["ids"] and len(ids) == 4
    assert nearest == [direct["ids"][j] for j in sims.argmax(1)]
    drawn(page, "#embed-map", "embed-map.png")


def test_score_panel_heatmap_hover_keyboard_and_csv(page, server):
    page.click("#tab-score")
    page.fill("#score-input", WILD_TYPE)
    run_panel(page, "score")
    mutations = [f"{w}{i + 1}{a}" for i, w in enumerate(WILD_TYPE) for a in AA if a != w]
    direct = api(server, f"/v1/models/{ESM2_NAME}/score",
                 {"sequences": [{"id": "seq1", "sequence": WILD_TYPE}], "method": "masked_marginals",
                  "mutations": mutations}).json()
    scores = dict(zip(direct["mutations"], direct["scores"]))
    drawn(page, "#score-heatmap", "score-heatmap.png", at_least=20)
    # Hover over the cell of K2A (row A, column 2): the readout is the API's score.
    geometry = page.evaluate("({m: scan.geometry.margin, w: scan.geometry.w, h: scan.geometry.h})")
    box = page.locator("#score-heatmap").bounding_box()
    row, col = AA.index("A"), 1
    page.mouse.move(box["x"] + geometry["m"]["left"] + (col + 0.5) * geometry["w"],
                    box["y"] + geometry["m"]["top"] + (row + 0.5) * geometry["h"])
    assert page.text_content("#score-hover") == f"K2A: {scores['K2A']:.4f}"
    assert page.is_visible("#tooltip")
    # Keyboard: the cursor starts on (A, M1); rows run A, C, D, ...: Down, Down, Right is K2D.
    page.focus("#score-heatmap")
    for key in ("ArrowDown", "ArrowDown", "ArrowRight"):
        page.keyboard.press(key)
    assert page.text_content("#score-hover") == f"K2D: {scores['K2D']:.4f}"
    with page.expect_download() as info:
        page.click("#score-csv")
    rows = list(csv.DictReader(io.StringIO(open(info.value.path()).read())))
    assert len(rows) == 19 * len(WILD_TYPE)
    assert {r["mutation"]: float(r["score"]) for r in rows} == pytest.approx(scores)


def test_generate_panel_grid_sorts(page, server):
    page.click("#tab-generate")
    page.fill("#generate-n", "8")
    page.fill("#generate-radius", "1.5")  # the tiny model's latent: wide enough for several distinct molecules
    run_panel(page, "generate")
    cards = page.locator("#generate-grid figure")
    stats = page.text_content("#generate-stats")
    assert cards.count() == int(stats.split()[0]) >= 2, stats  # the unique valid molecules the tiny model found
    assert page.locator("#generate-grid img").first.get_attribute("src").startswith("data:image/svg+xml")
    for key, pattern in (("qed", r"QED (-?[\d.]+)"), ("logp", r"logP (-?[\d.]+)")):
        page.select_option("#generate-sort", key)
        values = [float(re.search(pattern, t).group(1)) for t in cards.all_text_contents()]
        assert values == sorted(values, reverse=True)
    save_artifact("playground-generate.png", page.screenshot(full_page=True))


def test_generate_guided_draws_its_trace(page, server):
    page.click("#tab-generate")
    page.check("#generate-guided")
    page.fill("#generate-iterations", "3")
    page.fill("#generate-particles", "4")
    page.fill("#generate-n", "2")
    run_panel(page, "generate")
    assert page.is_visible("#generate-trace-figure")
    drawn(page, "#generate-trace", "generate-trace.png")


def test_generate_bad_smiles_shows_the_422_sentence(page, server):
    page.click("#tab-generate")
    page.fill("#generate-input", "C1CC(")
    page.click("#generate-run")
    direct = api(server, "/v1/models/megamolbart/generate", {"sequences": ["C1CC("], "num_molecules": 8,
                                                               "scaled_radius": 1.0, "seed": 0})
    assert direct.status_code == 422
    page.wait_for_function("document.getElementById('generate-error').textContent.length > 0")
    assert page.text_content("#generate-error") == direct.json()["detail"]


def test_depict_route(server):
    r = api(server, "/v1/chem/depict", {"sequences": ["CC(=O)Oc1ccccc1C(=O)O", "c1ccccc1"], "reference": "c1ccccc1"})
    assert r.status_code == 200
    mols = r.json()["molecules"]
    assert [m["id"] for m in mols] == ["0", "1"] and all(m["svg"].lstrip().startswith("<?xml") for m in mols)
    assert mols[1]["similarity"] == pytest.approx(1.0) and 0 < mols[0]["similarity"] < 1
    assert 0 < mols[0]["qed"] < 1
    bad = api(server, "/v1/chem/depict", {"sequences": [{"id": "broken", "sequence": "C1CC"}]})
    assert bad.status_code == 422 and "broken" in bad.text


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    """The toy app (fast to start) behind API keys."""
    import json

    from keys_fixtures import add_key
    from server_fixtures import running_server, uvicorn_factory, write_toy_weights

    folder = tmp_path_factory.mktemp("playground-keys")
    keys = folder / "keys.json"
    key = add_key(keys, "alice")
    env = {"BIONEMO_LITE_HOME": str(folder / "home"), "BIONEMO_LITE_NO_PLUGINS": "1",
           "BIONEMO_LITE_WEIGHTS": json.dumps({"toy_encoder": str(write_toy_weights(folder / "toy.npz"))}),
           "BIONEMO_LITE_API_KEYS": str(keys), "BIONEMO_LITE_DEFAULT_MODEL": "off"}
    with running_server(uvicorn_factory("server_fixtures:toy_app"), env, folder) as srv:
        srv.key = key
        yield srv


def test_api_key_field(browser, keyed_server):
    from bionemo_lite.server.auth import MISSING

    context = browser.new_context()
    pg = context.new_page()
    pg.goto(keyed_server.base_url + "/playground/#embed")  # the page itself needs no key
    pg.wait_for_selector("body[data-ready=true]")
    missing = httpx.get(keyed_server.base_url + "/v1/models")
    assert missing.status_code == 401 and missing.json()["detail"] == MISSING
    assert pg.text_content("#embed-error") == missing.json()["detail"]
    pg.fill("#api-key", "not-a-key")
    pg.keyboard.press("Tab")  # "change": the models are asked for again, with the key
    pg.wait_for_function("document.getElementById('embed-error').textContent.includes('not valid')")
    pg.fill("#api-key", keyed_server.key)
    pg.keyboard.press("Tab")
    pg.wait_for_selector("#embed-model option[value=toy_encoder]", state="attached")
    pg.fill("#embed-input", ">a\nMKTAYIAK\n>b\nMKTAYIAR\n>c\nGSHMLE")
    pg.click("#embed-run")
    pg.wait_for_selector("#embed-result[data-done]")
    assert pg.locator("#embed-neighbours tbody tr").count() == 3
    assert pg.text_content("#embed-error") == ""
    context.close()
