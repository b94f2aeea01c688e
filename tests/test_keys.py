"""API keys: made by the real ``bionemo-lite keys`` CLI, checked by a real uvicorn server over HTTP.

The key file holds hashes only; a request without a key or with a wrong one is
a 401 with ``WWW-Authenticate: Bearer`` and the JSON error body, a disabled key
a 403; health, metrics and docs stay open; edits to the file apply without a
restart; the service refuses to listen beyond loopback without keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from bionemo_lite.server.auth import InsecureBindError, check_exposure, is_loopback
from bionemo_lite.server.keyfile import KeyFileError, new_key, read_key_file, update_key_file
from bionemo_lite.server.settings import Settings
from keys_fixtures import CLI, add_key, assert_error_body, bearer, keys_cli
from server_fixtures import cli_serve, free_port, running_server, uvicorn_factory, write_toy_weights


# ---------------------------------------------------------------- the key file and the CLI

def test_add_prints_a_new_key_once_and_the_file_keeps_only_its_hash(tmp_path):
    file = tmp_path / "conf" / "keys.json"
    done = keys_cli("add", "alice", "--file", str(file))
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert done.stdout.count("\n") == 1 and key.startswith("bnl_") and len(key) >= 40
    assert "shown only this once" in done.stderr and key not in done.stderr
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    text = file.read_text()
    assert key not in text and key[4:] not in text
    entry = json.loads(text)["keys"]["alice"]
    assert entry["hash"] == "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    assert datetime.fromisoformat(entry["created"]).tzinfo is not None
    assert entry["disabled"] is False
    assert not list(file.parent.glob(".*.part"))  # the atomic write left no temporary behind

    second = add_key(file, "bob", "--requests-per-minute", "120", "--max-in-flight", "2")
    assert second != key
    keys = json.loads(file.read_text())["keys"]
    assert keys["bob"]["requests_per_minute"] == 120 and keys["bob"]["max_in_flight"] == 2
    assert keys["alice"] == entry and stat.S_IMODE(file.stat().st_mode) == 0o600
    assert key not in file.read_text() and second not in file.read_text()


def test_a_duplicate_name_is_refused_and_the_file_is_left_alone(tmp_path):
    file = tmp_path / "keys.json"
    add_key(file, "alice")
    before = file.read_bytes()
    done = keys_cli("add", "alice", "--file", str(file))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("Error: a key named 'alice' already exists") and "Traceback" not in done.stderr
    assert file.read_bytes() == before


def test_list_names_the_keys_and_never_shows_a_key_or_hash(tmp_path):
    file = tmp_path / "keys.json"
    alice = add_key(file, "alice")
    add_key(file, "bob", "--requests-per-minute", "120")
    hashes = [e["hash"] for e in json.loads(file.read_text())["keys"].values()]
    table = keys_cli("list", "--file", str(file))
    as_json = keys_cli("list", "--file", str(file), "--json", env={"BIONEMO_LITE_API_KEYS": "/nonexistent"})
    for done in (table, as_json):
        assert done.returncode == 0, done.stderr
        out = done.stdout + done.stderr
        assert "alice" in out and "bob" in out
        assert alice not in out and "sha256" not in out and not any(h[7:] in out for h in hashes)
    assert [line.split()[:3] for line in table.stdout.splitlines()[1:]] == [
        ["alice", json.loads(file.read_text())["keys"]["alice"]["created"], "enabled"],
        ["bob", json.loads(file.read_text())["keys"]["bob"]["created"], "enabled"]]
    entries = json.loads(as_json.stdout)
    assert [(e["name"], e["requests_per_minute"]) for e in entries] == [("alice", None), ("bob", 120)]


def test_remove_disable_enable_and_the_environment_variable(tmp_path):
    file = tmp_path / "keys.json"
    env = {"BIONEMO_LITE_API_KEYS": str(file)}  # no --file: the variable names the file
    add_key(file, "alice")
    add_key(file, "bob")
    assert keys_cli("disable", "bob", env=env).returncode == 0
    assert read_key_file(file).keys["bob"].disabled
    assert keys_cli("enable", "bob", env=env).returncode == 0
    assert not read_key_file(file).keys["bob"].disabled
    assert keys_cli("remove", "alice", env=env).returncode == 0
    assert list(read_key_file(file).keys) == ["bob"]
    missing = keys_cli("remove", "alcie", env=env)
    assert missing.returncode == 1 and "no key named 'alcie'" in missing.stderr
    elsewhere = keys_cli("disable", "bob", "--file", str(tmp_path / "nowhere" / "keys.json"))
    assert elsewhere.returncode == 1 and "does not exist: create it with" in elsewhere.stderr
    assert not (tmp_path / "nowhere").exists()
    assert stat.S_IMODE(file.stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["", ".hidden", "has space", "x" * 65, "a/b"])
def test_bad_names_are_refused(tmp_path, name):
    done = keys_cli("add", name, "--file", str(tmp_path / "keys.json"))
    assert done.returncode == 1 and "invalid key name" in done.stderr
    assert not (tmp_path / "keys.json").exists()


def test_a_malformed_file_is_a_clear_error(tmp_path):
    file = tmp_path / "keys.json"
    file.write_text('{"version": 1, "keys": {"alice": {"hash": "plain-text-key", "created": "today"}}}')
    with pytest.raises(KeyFileError, match=r"keys\.alice\.hash"):
        read_key_file(file)
    file.write_text("not json")
    with pytest.raises(KeyFileError, match="is not valid"):
        read_key_file(file)
    with pytest.raises(KeyFileError, match="does not exist: create it with `bionemo-lite keys add"):
        read_key_file(tmp_path / "missing.json")


def test_concurrent_edits_lose_no_key(tmp_path):
    """Each edit reads, waits, then writes: without the lock every writer but one would lose the others' keys."""
    file = tmp_path / "keys.json"
    names = [f"worker-{i}" for i in range(4)]

    def slow_add(name: str) -> None:
        def change(keyfile):
            time.sleep(0.2)
            return keyfile.added(name, new_key())
        update_key_file(file, change, missing_ok=True)

    threads = [threading.Thread(target=slow_add, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(read_key_file(file).keys) == names


def test_match_finds_the_key_by_its_hash(tmp_path):
    file = tmp_path / "keys.json"
    keyfile = read_key_file(file, missing_ok=True)
    alice, bob = new_key(), new_key()
    keyfile = keyfile.added("alice", alice).added("bob", bob)
    assert keyfile.match(alice)[0] == "alice" and keyfile.match(bob)[0] == "bob"
    assert keyfile.match(alice[:-1]) is None and keyfile.match("") is None


# ---------------------------------------------------------------- who may listen where

@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
                                            ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False),
                                            ("10.1.2.3", False), ("no-such-host.invalid", False)])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_exposure_needs_keys_or_insecure():
    check_exposure(Settings())  # 127.0.0.1
    check_exposure(Settings(host="0.0.0.0", api_keys="/etc/keys.json"))
    check_exposure(Settings(host="0.0.0.0", insecure=True))
    with pytest.raises(InsecureBindError, match="refusing to listen on 0.0.0.0 without API keys"):
        check_exposure(Settings(host="0.0.0.0"))


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BIONEMO_LITE_")}
    home = tempfile.mkdtemp(prefix="serve-home-")  # not the user's cache: what is in it would be logged
    return subprocess.run([*CLI, "serve", "--port", str(free_port()), *args], capture_output=True, text=True,
                          timeout=120, env={**base, "BIONEMO_LITE_HOME": home, "BIONEMO_LITE_DEFAULT_MODEL": "off",
                                            **(env or {})})


def test_serve_refuses_other_addresses_without_keys(tmp_path):
    done = _serve("--host", "0.0.0.0")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert done.stderr.startswith("Error: refusing to listen on 0.0.0.0 without API keys") and "--insecure" in done.stderr
    missing = _serve("--host", "0.0.0.0", "--api-keys", str(tmp_path / "missing.json"))
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert f"API key file {tmp_path / 'missing.json'} does not exist" in missing.stderr


@pytest.mark.slow
def test_serve_starts_on_all_addresses_with_insecure_or_with_keys(tmp_path):
    env = {"BIONEMO_LITE_DEFAULT_MODEL": "off", "BIONEMO_LITE_HOME": str(tmp_path / "cache"),
           "BIONEMO_LITE_LOG_LEVEL": "warning"}
    with running_server(cli_serve("--host", "0.0.0.0", "--insecure"), env, tmp_path / "insecure") as server:
        assert httpx.get(f"{server.base_url}/v1/models").status_code == 200  # no key needed
    file = tmp_path / "keys.json"
    key = add_key(file, "alice")
    with running_server(cli_serve("--host", "0.0.0.0", "--api-keys", str(file)), env, tmp_path / "keys") as server:
        assert httpx.get(f"{server.base_url}/v1/models").status_code == 401
        assert httpx.get(f"{server.base_url}/v1/models", headers=bearer(key)).status_code == 200


# ---------------------------------------------------------------- a server with keys on

@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, object]:
    file = tmp_path_factory.mktemp("keys") / "keys.json"
    made = {"file": file, "alice": add_key(file, "alice"), "carol": add_key(file, "carol")}
    assert keys_cli("disable", "carol", "--file", str(file)).returncode == 0
    return made


@pytest.fixture(scope="module")
def server(tmp_path_factory, keys):
    tmp = tmp_path_factory.mktemp("keyserver")
    toy = write_toy_weights(tmp / "toy.npz")
    env = {"BIONEMO_LITE_HOME": str(tmp / "empty-cache"), "BIONEMO_LITE_NO_PLUGINS": "1",
           "BIONEMO_LITE_WEIGHTS": json.dumps({"toy_encoder": str(toy)}), "BIONEMO_LITE_API_KEYS": str(keys["file"])}
    with running_server(uvicorn_factory("server_fixtures:toy_app"), env, tmp) as srv:
        yield srv


EMBED = "/v1/models/toy_encoder/embed"
BODY = {"sequences": ["ACDE"]}


def test_no_key_is_401_with_a_bearer_challenge(client):
    r = client.post(EMBED, json=BODY, headers={"X-Request-ID": "no-key-1"})
    body = assert_error_body(r, 401, "unauthorized")
    assert body["request_id"] == "no-key-1" and "Authorization: Bearer KEY" in body["detail"]
    assert r.headers["www-authenticate"] == 'Bearer realm="bionemo-lite"'
    assert_error_body(client.get("/v1/models"), 401, "unauthorized")
    assert_error_body(client.get("/v1/no-such-route"), 401, "unauthorized")  # routes are not revealed either


@pytest.mark.parametrize("header", ["Bearer bnl_not-a-key", "Bearer", "Basic YWxpY2U6c2VjcmV0", "bnl_bare-key"])
def test_a_wrong_key_is_401(client, keys, header):
    r = client.post(EMBED, json=BODY, headers={"Authorization": header})
    body = assert_error_body(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith('Bearer realm="bionemo-lite"')
    assert keys["alice"] not in r.text and "bnl_" not in body["detail"]


def test_a_near_miss_of_a_real_key_is_401(client, keys):
    key = keys["alice"]
    for wrong in (key[:-1], key + "x", key.upper(), key[:-1] + ("A" if key[-1] != "A" else "B")):
        r = client.post(EMBED, json=BODY, headers=bearer(wrong))
        assert_error_body(r, 401, "unauthorized")
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_the_key_answers_200(client, keys):
    r = client.post(EMBED, json=BODY, headers=bearer(keys["alice"]))
    assert r.status_code == 200, r.text
    assert r.json()["ids"] == ["0"] and len(r.json()["embeddings"][0]) == 8
    # The scheme's case does not matter (RFC 7235); a bad body is still the usual 422 once the key is good.
    assert client.get("/v1/models", headers={"Authorization": f"bearer {keys['alice']}"}).status_code == 200
    assert_error_body(client.post(EMBED, json={"sequences": ["AC1"]}, headers=bearer(keys["alice"])), 422,
                      "invalid_input")


def test_a_disabled_key_is_403(client, keys):
    r = client.post(EMBED, json=BODY, headers=bearer(keys["carol"]))
    body = assert_error_body(r, 403, "forbidden")
    assert body["detail"] == "API key 'carol' is disabled" and "www-authenticate" not in r.headers


def test_health_metrics_and_docs_stay_open(client):
    assert client.get("/v1/health/live").status_code == 200
    assert client.get("/v1/health/ready").status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "bionemo-lite"
    assert client.get("/docs").status_code == 200 and client.get("/redoc").status_code == 200
    assert client.get("/v1/metrics").status_code != 401  # another module serves it; no key is asked for


def test_the_openapi_schema_declares_the_bearer_keys(client):
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer", "description": "An API key from `bionemo-lite keys add`."}
    assert schema["paths"]["/v1/models/{name}/embed"]["post"]["security"] == [{"apiKey": []}]
    assert "security" not in schema["paths"]["/v1/health/live"]["get"]


def _until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_key_file_edits_apply_without_a_restart(client, keys, server):
    file: Path = keys["file"]
    dave = add_key(file, "dave")
    assert _until(lambda: client.get("/v1/models", headers=bearer(dave)).status_code == 200)
    assert keys_cli("disable", "dave", "--file", str(file)).returncode == 0
    assert _until(lambda: client.get("/v1/models", headers=bearer(dave)).status_code == 403)

    # A broken hand edit is logged and the keys read before stay in force.
    good = file.read_text()
    file.write_text(good.replace('"version": 1', '"version": 1,,'))
    assert client.get("/v1/models", headers=bearer(keys["alice"])).status_code == 200
    assert _until(lambda: "keeping the" in server.log())
    file.write_text(good)
    assert keys_cli("remove", "dave", "--file", str(file)).returncode == 0
    assert _until(lambda: client.get("/v1/models", headers=bearer(dave)).status_code == 401)
    assert client.get("/v1/models", headers=bearer(keys["alice"])).status_code == 200


def test_no_key_reaches_the_log(server, keys):
    log = server.log()
    assert keys["alice"] not in log and keys["carol"] not in log
