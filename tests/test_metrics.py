"""Prometheus metrics at ``/v1/metrics``, readiness and the version route, over real HTTP.

A real uvicorn process serves the toy plugin (`server_fixtures`); each test reads
the metrics before and after its own requests and checks what moved, on models
no other test of the module touches where counts must be exact. The queue and
in-flight hooks are also driven directly, on a real asyncio lock and worker thread.
"""

from __future__ import annotations

import asyncio
import json
import platform
import threading
import time
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import bionemo_lite
from bionemo_lite.server import metrics as service_metrics
from bionemo_lite.server.metrics import ServiceMetrics, model_label
from server_fixtures import parallel_posts, register_toys, running_server, uvicorn_factory, write_toy_weights

LOAD_DELAY = 0.4  # seconds each toy load sleeps: a lower bound for the load-seconds observation
WITH_WEIGHTS = ("toy_encoder", "toy_encoder_b", "toy_encoder_c", "toy_folder")
EMBED_ROUTE = "/v1/models/{name}/embed"


@pytest.fixture(scope="module")
def toy_weights(tmp_path_factory) -> Path:
    return write_toy_weights(tmp_path_factory.mktemp("toyw") / "toy.npz")


@pytest.fixture(scope="module")
def server(tmp_path_factory, toy_weights):
    tmp = tmp_path_factory.mktemp("metricserver")
    env = {
        "BIONEMO_LITE_HOME": str(tmp / "empty-cache"),
        "BIONEMO_LITE_NO_PLUGINS": "1",
        "BIONEMO_LITE_WEIGHTS": json.dumps({name: str(toy_weights) for name in WITH_WEIGHTS}),
        "BIONEMO_LITE_PRELOAD": "toy_folder",
        "BIONEMO_LITE_BATCH_WINDOW_MS": "300",  # wide: requests released together surely share a call
        "TOY_LOAD_DELAY": str(LOAD_DELAY),
    }
    with running_server(uvicorn_factory("server_fixtures:toy_app"), env, tmp) as srv:
        assert srv.wait_ready().status_code == 200
        yield srv


def scrape(client: httpx.Client) -> dict[tuple[str, frozenset], float]:
    """Every sample of ``/v1/metrics``: ``{(sample name, labels): value}``."""
    r = client.get("/v1/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    """The sample `name` with exactly `labels` (0 when it has not been created yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def label_values(samples: dict) -> set[str]:
    return {v for _, labels in samples for _, v in labels}


# ---------------------------------------------------------------- counts, latency, status

def test_requests_counted_by_route_template_model_and_status(client):
    before = scrape(client)
    ok = {"sequences": ["ACDE", "KLMNP"]}
    assert client.post("/v1/models/toy_encoder/embed", json=ok).status_code == 200
    assert client.post("/v1/models/toy_encoder/embed", json=ok).status_code == 200
    assert client.post("/v1/models/toy_encoder/embed", json={"sequences": ["ACJE"]}).status_code == 422
    assert client.post("/v1/models/toy_encoder/score", json={"sequences": ["ACDE"], "method": "crash"}).status_code == 500
    after = scrape(client)

    def moved(status: str, route: str = EMBED_ROUTE) -> float:
        labels = {"method": "POST", "route": route, "model": "toy_encoder", "status": status}
        return value(after, "bionemo_lite_http_requests_total", **labels) - \
            value(before, "bionemo_lite_http_requests_total", **labels)

    assert moved("200") == 2 and moved("422") == 1
    assert moved("500", "/v1/models/{name}/score") == 1  # a plugin bug's 500 is counted too
    latency = {"method": "POST", "route": EMBED_ROUTE, "model": "toy_encoder"}
    count = "bionemo_lite_http_request_duration_seconds_count"
    assert value(after, count, **latency) - value(before, count, **latency) == 3
    total = "bionemo_lite_http_request_duration_seconds_sum"
    assert value(after, total, **latency) > value(before, total, **latency)
    assert "/v1/models/toy_encoder/embed" not in label_values(after)  # the template, never the raw path


def test_unknown_names_and_paths_do_not_create_label_values(client):
    before = scrape(client)
    for i in range(3):
        assert client.post(f"/v1/models/made_up_{i}/embed", json={"sequences": ["ACDE"]}).status_code == 404
        assert client.get(f"/v1/nowhere/{i}").status_code == 404
    assert client.request("PURGE", "/v1/health/live").status_code == 405
    after = scrape(client)
    assert not any(v.startswith(("made_up", "/v1/nowhere")) or v == "PURGE" for v in label_values(after))
    other = {"method": "POST", "route": EMBED_ROUTE, "model": "other", "status": "404"}
    unmatched = {"method": "GET", "route": "unmatched", "model": "none", "status": "404"}
    for labels, n in ((other, 3), (unmatched, 3)):
        assert value(after, "bionemo_lite_http_requests_total", **labels) - \
            value(before, "bionemo_lite_http_requests_total", **labels) == n
    brew = {"method": "other", "route": "/v1/health/live", "model": "none", "status": "405"}
    assert value(after, "bionemo_lite_http_requests_total", **brew) - \
        value(before, "bionemo_lite_http_requests_total", **brew) == 1


def test_model_label_is_bounded():
    register_toys()
    assert model_label("toy_encoder") == "toy_encoder"
    assert model_label("toy_encoder_typo") == model_label("../../etc") == "other"
    assert model_label(None) == "none"


# ---------------------------------------------------------------- batches, loads, queue, in flight

def test_concurrent_embeds_observe_their_batch_size(client, server):
    name = "toy_encoder_c"  # only this test embeds with it
    bodies = [{"sequences": [f"ACDE{'K' * i}", "MNPQ"]} for i in range(4)]
    assert all(r.status_code == 200 for r in parallel_posts(server.base_url, f"/v1/models/{name}/embed", bodies))
    after = scrape(client)
    calls = value(after, "bionemo_lite_embed_batch_requests_count", model=name)
    assert value(after, "bionemo_lite_embed_batch_requests_sum", model=name) == 4  # every request in one call
    assert value(after, "bionemo_lite_embed_batch_records_sum", model=name) == 8
    assert 1 <= calls < 4  # merged: fewer calls than requests
    single = value(after, "bionemo_lite_embed_batch_requests_bucket", model=name, le="1.0")
    assert single < calls  # some call merged more than one request
    entry = client.get(f"/v1/models/{name}").json()
    assert entry["batched_requests"] == 4 and entry["batched_calls"] == calls


def test_model_load_seconds_after_preload_and_lazy_load(client):
    name = "toy_encoder_b"  # loaded on first use, by this test only
    before = scrape(client)
    assert value(before, "bionemo_lite_model_load_seconds_count", model=name) == 0
    assert value(before, "bionemo_lite_model_load_seconds_count", model="toy_folder") == 1  # the preload
    assert value(before, "bionemo_lite_model_load_seconds_sum", model="toy_folder") >= LOAD_DELAY
    assert client.post(f"/v1/models/{name}/embed", json={"sequences": ["ACDE"]}).status_code == 200
    assert client.post(f"/v1/models/{name}/embed", json={"sequences": ["ACDE"]}).status_code == 200
    after = scrape(client)
    assert value(after, "bionemo_lite_model_load_seconds_count", model=name) == 1  # loaded once
    assert value(after, "bionemo_lite_model_load_seconds_sum", model=name) >= LOAD_DELAY


def test_queue_and_in_flight_are_zero_at_rest(client):
    assert client.post("/v1/models/toy_encoder/embed", json={"sequences": ["ACDE"]}).status_code == 200
    samples = scrape(client)
    assert ("bionemo_lite_model_queue_depth", frozenset({("model", "toy_encoder")})) in samples
    assert value(samples, "bionemo_lite_model_queue_depth", model="toy_encoder") == 0
    assert value(samples, "bionemo_lite_model_calls_in_flight", model="toy_encoder") == 0


def test_queue_depth_counts_waiters_and_forgets_cancelled_ones():
    register_toys()
    m = ServiceMetrics()

    def depth() -> float:
        return m.registry.get_sample_value("bionemo_lite_model_queue_depth", {"model": "toy_encoder"}) or 0.0

    async def scenario() -> list[float]:
        lock = asyncio.Lock()
        seen = []
        async with service_metrics.queued(m, "toy_encoder", lock):  # the model is busy
            waiter = asyncio.ensure_future(service_metrics.queued(m, "toy_encoder", lock).__aenter__())
            cancelled = asyncio.ensure_future(service_metrics.queued(m, "toy_encoder", lock).__aenter__())
            await asyncio.sleep(0.01)
            seen.append(depth())
            cancelled.cancel()
            await asyncio.sleep(0.01)
            seen.append(depth())
        await waiter  # its turn: out of the queue
        seen.append(depth())
        return seen

    assert asyncio.run(scenario()) == [2.0, 1.0, 0.0]


def test_in_flight_counts_calls_while_they_compute():
    register_toys()
    m = ServiceMetrics()
    started, release = threading.Event(), threading.Event()

    def in_flight() -> float:
        return m.registry.get_sample_value("bionemo_lite_model_calls_in_flight", {"model": "toy_encoder"}) or 0.0

    def work(x: int) -> int:
        started.set()
        release.wait(10)
        return x + 1

    results: list[int] = []
    thread = threading.Thread(target=lambda: results.append(service_metrics.computed(m, "toy_encoder", work, 1)))
    thread.start()
    assert started.wait(10)
    during = in_flight()
    release.set()
    thread.join(10)
    assert (during, in_flight(), results) == (1.0, 0.0, [2])


def test_each_app_has_its_own_registry(toy_weights):
    from bionemo_lite.server.app import create_app
    from bionemo_lite.server.settings import Settings

    register_toys()
    settings = Settings(weights={"toy_encoder": str(toy_weights)}, default_model="off")
    first, second = create_app(settings), create_app(settings)  # the global registry would refuse the second
    assert first.state.metrics.registry is not second.state.metrics.registry
    first.state.metrics.requests.labels("GET", "/v1/health/live", "none", "200").inc()
    assert second.state.metrics.registry.get_sample_value(
        "bionemo_lite_http_requests_total",
        {"method": "GET", "route": "/v1/health/live", "model": "none", "status": "200"}) is None


# ---------------------------------------------------------------- readiness and version

def test_version_route_and_live(client):
    assert client.get("/v1/health/live").json() == {"status": "live", "version": bionemo_lite.__version__}
    assert client.get("/v1/version").json() == {"version": bionemo_lite.__version__,
                                                "python": platform.python_version(), "torch": version("torch"),
                                                "backend": "inprocess"}


def test_models_listing_says_ready_per_model(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["toy_folder"]["ready"] is True and models["toy_folder"]["state"] == "loaded"
    assert models["toy_smiles"]["ready"] is False and models["toy_smiles"]["state"] == "not_loaded"
    one = client.get("/v1/models/toy_folder").json()
    assert one["ready"] is True and one["state"] == "loaded"


def probe_until(srv, seconds: float) -> list[tuple[int, str, dict]]:
    """(status code, readiness status, toy_encoder's listing entry) every 0.1 s for `seconds`,
    or until the first 200."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r = httpx.get(f"{srv.base_url}/v1/health/ready", timeout=5)
        entry = {m["name"]: m for m in httpx.get(f"{srv.base_url}/v1/models", timeout=5).json()["models"]}
        seen.append((r.status_code, r.json()["status"], entry))
        if r.status_code == 200:
            break
        time.sleep(0.1)
    return seen


def test_ready_is_503_while_a_slow_preload_loads_then_200(tmp_path, toy_weights):
    env = {"BIONEMO_LITE_HOME": str(tmp_path / "cache"), "BIONEMO_LITE_NO_PLUGINS": "1",
           "BIONEMO_LITE_WEIGHTS": json.dumps({"toy_encoder": str(toy_weights)}),
           "BIONEMO_LITE_PRELOAD": "toy_encoder", "TOY_LOAD_DELAY": "3"}
    with running_server(uvicorn_factory("server_fixtures:toy_app"), env, tmp_path) as srv:
        seen = probe_until(srv, 60)
        samples = scrape(httpx.Client(base_url=srv.base_url))
    first, last = seen[0], seen[-1]
    assert first[:2] == (503, "loading")
    assert first[2]["toy_encoder"]["ready"] is False and first[2]["toy_encoder"]["state"] == "loading"
    assert last[:2] == (200, "ready")
    assert last[2]["toy_encoder"]["ready"] is True and last[2]["toy_encoder"]["state"] == "loaded"
    assert all(code == 503 for code, _, _ in seen[:-1])
    assert value(samples, "bionemo_lite_model_load_seconds_count", model="toy_encoder") == 1


def test_ready_never_200_when_no_preloaded_model_can_load(tmp_path):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not an npz file")
    env = {"BIONEMO_LITE_HOME": str(tmp_path / "cache"), "BIONEMO_LITE_NO_PLUGINS": "1",
           "BIONEMO_LITE_WEIGHTS": json.dumps({"toy_broken": str(broken)}),
           "BIONEMO_LITE_PRELOAD": "toy_broken,toy_encoder_b"}  # unreadable weights; no weights at all
    with running_server(uvicorn_factory("server_fixtures:toy_app"), env, tmp_path) as srv:
        seen = probe_until(srv, 3)
        body = httpx.get(f"{srv.base_url}/v1/health/ready").json()
    assert {code for code, _, _ in seen} == {503}
    assert body["status"] == "not_ready" and body["loading"] == []
    assert {(m["model"], m["reason"]) for m in body["missing"]} == {("toy_broken", "model_unavailable"),
                                                                      ("toy_encoder_b", "weights_not_found")}
    entries = seen[-1][2]
    assert [entries[n]["ready"] for n in ("toy_broken", "toy_encoder_b")] == [False, False]
    assert {entries[n]["state"] for n in ("toy_broken", "toy_encoder_b")} == {"failed"}
