"""Per-key and per-address limits over real HTTP: requests per minute and requests in flight -> 429.

Every 429 carries ``Retry-After`` (whole seconds) and a JSON body naming the
limit and its value; limits come from the settings unless the key's entry in
the key file sets its own; health probes are never limited.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from bionemo_lite.server.ratelimit import Client, ClientLimiter, Limits
from keys_fixtures import add_key, assert_error_body, bearer
from server_fixtures import running_server, uvicorn_factory, write_toy_weights

DEFAULT_RATE = 5
TOY_LOAD_DELAY = 3.0  # the first request to a toy model takes this long: a request that stays in flight


def test_limiter_counts_per_client_and_frees_slots():
    limiter = ClientLimiter()
    a = Client("key:a", "key 'a'", Limits(requests_per_minute=2, max_in_flight=1))
    b = Client("key:b", "key 'b'", Limits(requests_per_minute=0, max_in_flight=0))
    assert limiter.admit(a) is None
    busy = limiter.admit(a)
    assert (busy.limit, busy.value, busy.retry_after) == ("max_in_flight", 1, 1)
    assert all(limiter.admit(b) is None for _ in range(100))  # 0: unlimited, and other clients are not affected
    limiter.release(a)
    assert limiter.admit(a) is None  # the refused request took no slot and used none of the rate
    limiter.release(a)
    over = limiter.admit(a)
    assert over.limit == "requests_per_minute" and over.value == 2 and 1 <= over.retry_after <= 60
    assert "key 'a' made its 2 requests of the last minute" in over.detail


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, str]:
    file = tmp_path_factory.mktemp("limitkeys") / "keys.json"
    return {"file": str(file), "plain": add_key(file, "plain"),
            "ratey": add_key(file, "ratey", "--requests-per-minute", "3"),
            "single": add_key(file, "single", "--max-in-flight", "1", "--requests-per-minute", "0"),
            "free": add_key(file, "free", "--requests-per-minute", "0")}


@pytest.fixture(scope="module")
def server(tmp_path_factory, keys):
    tmp = tmp_path_factory.mktemp("limitserver")
    toy = write_toy_weights(tmp / "toy.npz")
    env = {"BIONEMO_LITE_HOME": str(tmp / "empty-cache"), "BIONEMO_LITE_NO_PLUGINS": "1",
           "BIONEMO_LITE_WEIGHTS": json.dumps({"toy_encoder": str(toy), "toy_encoder_b": str(toy)}),
           "BIONEMO_LITE_API_KEYS": keys["file"], "BIONEMO_LITE_REQUESTS_PER_MINUTE": str(DEFAULT_RATE),
           "TOY_LOAD_DELAY": str(TOY_LOAD_DELAY)}
    with running_server(uvicorn_factory("server_fixtures:toy_app"), env, tmp) as srv:
        yield srv


def assert_429(r: httpx.Response, limit: str, value: int) -> dict:
    body = assert_error_body(r, 429, "too_many_requests")
    assert body["limit"] == limit and body["value"] == value
    assert r.headers["retry-after"].isdigit() and int(r.headers["retry-after"]) == body["retry_after"] >= 1
    return body


def test_a_key_over_its_own_rate_gets_429_with_retry_after(client, keys):
    codes = [client.get("/v1/models", headers=bearer(keys["ratey"])).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    r = client.get("/v1/models", headers=bearer(keys["ratey"]))
    body = assert_429(r, "requests_per_minute", 3)
    assert 50 <= body["retry_after"] <= 60  # the first of the three leaves the window a minute after it came
    assert "key 'ratey'" in body["detail"] and "requests_per_minute" in body["detail"]
    # Health is never counted or refused; another key has its own window.
    assert client.get("/v1/health/live", headers=bearer(keys["ratey"])).status_code == 200
    assert client.get("/v1/models", headers=bearer(keys["free"])).status_code == 200
    assert_429(client.get("/v1/models", headers=bearer(keys["ratey"])), "requests_per_minute", 3)


def test_the_settings_give_the_default_rate(client, keys):
    codes = [client.get("/v1/models", headers=bearer(keys["plain"])).status_code for _ in range(DEFAULT_RATE)]
    assert codes == [200] * DEFAULT_RATE
    assert_429(client.get("/v1/models", headers=bearer(keys["plain"])), "requests_per_minute", DEFAULT_RATE)
    assert all(client.get("/v1/models", headers=bearer(keys["free"])).status_code == 200  # its own 0: no limit
               for _ in range(DEFAULT_RATE + 2))


def test_a_key_over_its_concurrency_gets_429(server, keys):
    slow: dict[str, httpx.Response] = {}

    def first_request() -> None:  # toy_encoder_b is not loaded yet: its first request takes TOY_LOAD_DELAY
        slow["r"] = httpx.post(f"{server.base_url}/v1/models/toy_encoder_b/embed", json={"sequences": ["ACDE"]},
                               headers=bearer(keys["single"]), timeout=60)

    def state(c: httpx.Client) -> str:  # asked with another key, so the probe takes none of 'single's slot
        models = c.get("/v1/models", headers=bearer(keys["free"])).json()["models"]
        return next(m["state"] for m in models if m["name"] == "toy_encoder_b")

    thread = threading.Thread(target=first_request)
    started = time.monotonic()
    thread.start()
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        # Probe only once the slow request holds the slot: a probe sent first would take it instead.
        while state(c) != "loading":
            assert thread.is_alive() and time.monotonic() - started < TOY_LOAD_DELAY, "the load was never seen"
            time.sleep(0.01)
        refused = c.get("/v1/models", headers=bearer(keys["single"]))
        thread.join()
        body = assert_429(refused, "max_in_flight", 1)
        assert refused.headers["retry-after"] == "1" and "1 requests in flight" in body["detail"]
        assert slow["r"].status_code == 200 and time.monotonic() - started >= TOY_LOAD_DELAY
        # The slot is free again once the slow answer is out, and after an error answer too.
        assert c.get("/v1/models", headers=bearer(keys["single"])).status_code == 200
        assert c.post("/v1/models/toy_encoder_b/embed", json={"sequences": ["AC1"]},
                      headers=bearer(keys["single"])).status_code == 422
        assert c.get("/v1/models", headers=bearer(keys["single"])).status_code == 200


def test_without_keys_limits_can_apply_per_address(tmp_path):
    env = {"BIONEMO_LITE_HOME": str(tmp_path / "cache"), "BIONEMO_LITE_NO_PLUGINS": "1",
           "BIONEMO_LITE_DEFAULT_MODEL": "off", "BIONEMO_LITE_LIMIT_BY_ADDRESS": "true",
           "BIONEMO_LITE_REQUESTS_PER_MINUTE": "2"}
    with running_server(uvicorn_factory("server_fixtures:toy_app"), env, tmp_path) as srv, \
            httpx.Client(base_url=srv.base_url, timeout=30) as c:
        assert [c.get("/v1/models").status_code for _ in range(2)] == [200, 200]
        body = assert_429(c.get("/v1/models"), "requests_per_minute", 2)
        assert "client 127.0.0.1" in body["detail"]
        assert [c.get("/v1/health/live").status_code for _ in range(3)] == [200] * 3  # probes are never limited


def test_limits_are_off_by_default_without_keys(tmp_path):
    env = {"BIONEMO_LITE_HOME": str(tmp_path / "cache"), "BIONEMO_LITE_NO_PLUGINS": "1",
           "BIONEMO_LITE_DEFAULT_MODEL": "off", "BIONEMO_LITE_REQUESTS_PER_MINUTE": "2"}
    with running_server(uvicorn_factory("server_fixtures:toy_app"), env, tmp_path) as srv, \
            httpx.Client(base_url=srv.base_url, timeout=30) as c:
        assert [c.get("/v1/models").status_code for _ in range(4)] == [200] * 4
