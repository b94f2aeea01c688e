"""The playground's jobs panel in a real browser against a real server with its job worker (/v1/jobs):
upload a FASTA, watch the job to the end, download the results, and see a refused submission's sentence."""

from __future__ import annotations

import httpx
import pyarrow.parquet as pq
import pytest

from esm2_fixtures import ESM2_NAME
from playground_fixtures import CHROMIUM_ARGS, chromium_path, save_artifact
from server_fixtures import serve_cli

pytestmark = pytest.mark.slow
RECORDS = {f"r{i}": "MKTAYIAKQRQISFVKSHFSRQ"[: 8 + i] for i in range(12)}


@pytest.fixture(scope="module")
def server(tmp_path_factory, esm2_fair_checkpoint):
    folder = tmp_path_factory.mktemp("playground-jobs")
    with serve_cli(folder / "server", "--weights", f"{ESM2_NAME}={esm2_fair_checkpoint}") as srv:
        assert srv.wait_ready(120).status_code == 200
        yield srv


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        pg = context.new_page()
        pg.goto(server.base_url + "/playground/#jobs")
        pg.wait_for_selector("body[data-ready=true]")
        yield pg
        browser.close()


def test_jobs_panel_upload_watch_download(page, server, tmp_path):
    fasta = tmp_path / "proteins.fasta"
    fasta.write_text("".join(f">{k}\n{v}\n" for k, v in RECORDS.items()))
    page.select_option("#jobs-verb", "embed")
    page.select_option("#jobs-model", ESM2_NAME)
    page.set_input_files("#jobs-file", str(fasta))
    page.fill("#jobs-options", '{"pooling": "mean"}')
    page.select_option("#jobs-format", "parquet")
    page.focus("#jobs-run")
    page.keyboard.press("Enter")
    row = page.locator("#jobs-table tbody tr").first
    page.wait_for_selector("#jobs-table tbody tr[data-state=done]", timeout=120_000)
    job_id = row.get_attribute("data-id")
    view = httpx.get(f"{server.base_url}/v1/jobs/{job_id}").json()
    assert view["state"] == "done" and view["n_done"] == len(RECORDS)
    assert row.locator("progress").get_attribute("value") in ("1", "1.0")
    save_artifact("playground-jobs.png", page.screenshot(full_page=True))
    with page.expect_download() as info:
        row.get_by_role("button", name="Download results").click()
    table = pq.read_table(info.value.path())
    assert sorted(table.column("id").to_pylist()) == sorted(RECORDS)


def test_jobs_panel_shows_a_refused_submission_verbatim(page, server, tmp_path):
    fasta = tmp_path / "one.fasta"
    fasta.write_text(">a\nMKTAYIAK\n")
    page.select_option("#jobs-verb", "embed")
    page.set_input_files("#jobs-file", str(fasta))
    page.fill("#jobs-options", '{"pooling": "no_such_pooling"}')
    page.evaluate("document.getElementById('jobs-error').textContent = ''")
    page.click("#jobs-run")
    page.wait_for_function("document.getElementById('jobs-error').textContent.length > 0")
    direct = httpx.post(f"{server.base_url}/v1/jobs", files={"file": ("one.fasta", fasta.read_bytes())},
                        data={"request": '{"verb": "embed", "model": "%s", "options": {"pooling": "no_such_pooling"}}'
                              % ESM2_NAME})
    assert direct.status_code == 422
    assert page.text_content("#jobs-error") == direct.json()["detail"]
