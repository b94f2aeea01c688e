"""What the service serves when it starts, and what `/v1/health/ready` says about it.

Real uvicorn processes with the toy plugin: with nothing configured they serve
the cached models; with an empty cache they download the default model (here
``toy_download``, from a real HTTP server on 127.0.0.1) and serve it; offline
they start anyway, and ready answers 503 naming the model, its file and the
commands that fix it.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

import bionemo_lite
from bionemo_lite.registry import unregister
from server_fixtures import free_port, numerics_toy_spec, register_toys, running_server, uvicorn_factory, \
    write_toy_weights
from bionemo_lite.server.settings import DEFAULT_MODEL, Settings

FIX = ["bionemo-lite weights pull toy_download", 'make serve WEIGHTS="toy_download=/path/to/toy.npz"',
       "bionemo-lite serve --weights toy_download=/path/to/toy.npz"]


class CountingFiles:
    """A real HTTP file server on 127.0.0.1 that counts the GETs it answers."""

    def __init__(self, root: Path):
        self.gets = 0
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                outer.gets += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def files(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = CountingFiles(root)
    yield root, server
    server.close()


def startup_env(cache: Path, url: str, **extra: str) -> dict[str, str]:
    """Nothing configured: no weights, no preload; the default model is ``toy_download`` at `url`."""
    return {"BIONEMO_LITE_HOME": str(cache), "BIONEMO_LITE_NO_PLUGINS": "1",
            "BIONEMO_LITE_DEFAULT_MODEL": "toy_download", "TOY_DOWNLOAD_URL": url, **extra}


def startup_server(tmp_path: Path, env: dict[str, str]):
    return running_server(uvicorn_factory("server_fixtures:startup_toy_app"), env, tmp_path / "srv")


# ---------------------------------------------------------------- settings (no server)

def test_default_model_setting_and_its_off_switch(monkeypatch):
    assert Settings().default_model == DEFAULT_MODEL == "esm2_t6_8M_UR50D"
    for off in ("off", "", "none"):
        monkeypatch.setenv("BIONEMO_LITE_DEFAULT_MODEL", off)
        assert Settings().default_model is None
    assert Settings(default_model="toy_download").default_model == "toy_download"


def test_numerics_setting(monkeypatch):
    assert Settings().numerics is None
    monkeypatch.setenv("BIONEMO_LITE_NUMERICS", "Reference")
    assert Settings().numerics == "reference"
    monkeypatch.setenv("BIONEMO_LITE_NUMERICS", "")
    assert Settings().numerics is None
    with pytest.raises(ValueError, match="numerics"):
        Settings(numerics="exact")


@pytest.fixture
def numerics_toy():
    spec = bionemo_lite.register(numerics_toy_spec())
    yield spec
    unregister(spec.name)


def test_numerics_setting_reaches_the_loader(tmp_path, monkeypatch, numerics_toy):
    """Settings(numerics=...) is what `bionemo-lite serve --numerics` sets; the loader must get it."""
    import asyncio

    from bionemo_lite.server.backends.inprocess import InProcessProvider

    monkeypatch.delenv("BIONEMO_LITE_NUMERICS", raising=False)
    weights = {"toy_numerics": str(write_toy_weights(tmp_path / "toy.npz"))}

    async def loaded_numerics(numerics: str | None) -> str:
        provider = InProcessProvider(Settings(weights=weights, numerics=numerics))
        try:
            return (await provider.model("toy_numerics")).numerics
        finally:
            await provider.close()

    assert asyncio.run(loaded_numerics("reference")) == "reference"
    assert asyncio.run(loaded_numerics(None)) == "fast"  # the family's default


# ---------------------------------------------------------------- start-up with nothing configured

def test_online_empty_cache_downloads_the_default_model_and_serves_it(tmp_path, files):
    root, www = files
    payload = write_toy_weights(root / "toy.npz", seed=3).read_bytes()
    cache = tmp_path / "cache"
    env = startup_env(cache, f"{www.url}/toy.npz", TOY_DOWNLOAD_SHA256=hashlib.sha256(payload).hexdigest(),
                      TOY_LOAD_DELAY="3")  # a slow load, so "loading" can be seen
    with startup_server(tmp_path, env) as srv:
        first = httpx.get(f"{srv.base_url}/v1/health/ready")
        ready = srv.wait_ready()
        r = httpx.post(f"{srv.base_url}/v1/models/toy_download/embed", json={"sequences": ["MKTAY"]}, timeout=30)
    assert first.status_code == 503 and first.json()["status"] == "loading"
    assert first.json()["loading"] == ["toy_download"] and first.json()["missing"] == []
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert (cache / "toy_download" / "toy.npz").read_bytes() == payload and www.gets == 1
    register_toys()
    expected = bionemo_lite.load("toy_encoder", weights=root / "toy.npz").embed(["MKTAY"]).embeddings
    assert r.status_code == 200
    np.testing.assert_allclose(np.array(r.json()["embeddings"]), expected, atol=1e-6, rtol=0)

    # The next start finds it in the cache: served again, not downloaded again.
    with startup_server(tmp_path, {**env, "TOY_LOAD_DELAY": "0"}) as srv:
        assert srv.wait_ready().status_code == 200
    assert www.gets == 1


def test_offline_empty_cache_starts_and_ready_names_the_fix(tmp_path):
    cache = tmp_path / "cache"
    closed = f"http://127.0.0.1:{free_port()}/toy.npz"  # nothing listens: connection refused, as offline
    with startup_server(tmp_path, startup_env(cache, closed)) as srv:
        deadline = time.monotonic() + 30
        while (probe := httpx.get(f"{srv.base_url}/v1/health/ready")).json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        probes = [probe] + [httpx.get(f"{srv.base_url}/v1/health/ready") for _ in range(3)]
        embed = httpx.post(f"{srv.base_url}/v1/models/toy_download/embed", json={"sequences": ["MKT"]})
        log_while_missing = srv.log()

        # `bionemo-lite weights pull` (here: the file put in place) heals it without a restart.
        write_toy_weights(cache / "toy_download" / "toy.npz")
        healed = srv.wait_ready()
    assert [p.status_code for p in probes] == [503] * 4
    body = probes[-1].json()
    assert body["status"] == "not_ready" and body["loading"] == [] and len(body["missing"]) == 1
    missing = body["missing"][0]
    assert (missing["model"], missing["file"], missing["reason"], missing["fix"]) == (
        "toy_download", "toy.npz", "weights_not_found", FIX)
    assert "downloading it at start-up failed (ConnectError" in missing["detail"]
    assert "`bionemo-lite weights pull toy_download`" in body["detail"]
    assert str(tmp_path) not in probes[-1].text  # no server path
    assert log_while_missing.count(body["detail"]) == 1  # the log says it once, not per probe
    assert embed.status_code == 503 and embed.json()["error"] == "weights_not_found"
    assert healed.status_code == 200


def test_cached_models_are_served_when_nothing_is_configured(tmp_path, files):
    _, www = files
    cache = tmp_path / "cache"
    write_toy_weights(cache / "toy_encoder" / "toy.npz")
    (cache / "not_a_registered_model").mkdir()
    with startup_server(tmp_path, startup_env(cache, f"{www.url}/toy.npz")) as srv:
        ready = srv.wait_ready()
        listing = {m["name"]: m for m in httpx.get(f"{srv.base_url}/v1/models").json()["models"]}
    assert ready.status_code == 200
    assert listing["toy_encoder"]["loaded"] is True and listing["toy_encoder"]["problem"] is None
    other = listing["toy_encoder_b"]
    assert other["loaded"] is False and other["problem"]["reason"] == "weights_not_found"
    assert www.gets == 0  # something is cached: the default model is not fetched


def test_default_model_off_with_nothing_cached(tmp_path, files):
    _, www = files
    env = startup_env(tmp_path / "cache", f"{www.url}/toy.npz", BIONEMO_LITE_DEFAULT_MODEL="off")
    with startup_server(tmp_path, env) as srv:
        r = httpx.get(f"{srv.base_url}/v1/health/ready")
    assert r.status_code == 503 and r.json()["missing"][0]["reason"] == "no_model"
    assert "default_model is off" in r.json()["detail"] and www.gets == 0


def test_weights_setting_with_a_missing_file_is_not_ready(tmp_path):
    env = {"BIONEMO_LITE_HOME": str(tmp_path / "cache"), "BIONEMO_LITE_NO_PLUGINS": "1",
           "BIONEMO_LITE_WEIGHTS": f"toy_encoder={tmp_path / 'typo.npz'}"}
    with running_server(uvicorn_factory("server_fixtures:toy_app"), env, tmp_path / "srv") as srv:
        r = httpx.get(f"{srv.base_url}/v1/health/ready")
    assert r.status_code == 503
    missing = r.json()["missing"]
    assert [(m["model"], m["file"], m["fix"]) for m in missing] == [
        ("toy_encoder", "typo.npz", ['make serve WEIGHTS="toy_encoder=/path/to/typo.npz"',
                                     "bionemo-lite serve --weights toy_encoder=/path/to/typo.npz"])]
    assert str(tmp_path) not in r.text
