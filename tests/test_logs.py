"""JSON logs (``--log-format json`` / ``BIONEMO_LITE_LOG_FORMAT=json``) of real service processes.

Every line the process writes must be one JSON object with time, level, logger
and message; the lines written while a request is answered (uvicorn's access
line, the error log of a 5xx) carry the request's id, the same one its error
body and ``X-Request-ID`` header carry.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bionemo_lite.server.settings import Settings
from server_fixtures import cli_serve, running_server, write_toy_weights

FIELDS = {"time", "level", "logger", "message"}


def json_lines(log: str) -> list[dict]:
    """Every line of `log` as a JSON object (a line that is not one fails the test, naming it)."""
    lines = []
    for line in log.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"a log line is not JSON: {line!r}")
        assert isinstance(obj, dict) and FIELDS <= set(obj), line
        datetime.fromisoformat(obj["time"])  # ISO 8601
        lines.append(obj)
    return lines


def of_request(lines: list[dict], request_id: str) -> list[dict]:
    return [line for line in lines if line.get("request_id") == request_id]


def factory_at_info(port: int) -> list[str]:
    """``uvicorn --factory`` with the toy app, at INFO so its access log is on."""
    return [sys.executable, "-m", "uvicorn", "--factory", "server_fixtures:toy_app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "info"]


@pytest.fixture(scope="module")
def json_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jsonlogs")
    weights = write_toy_weights(tmp / "toy.npz")
    env = {"BIONEMO_LITE_HOME": str(tmp / "empty-cache"), "BIONEMO_LITE_NO_PLUGINS": "1",
           "BIONEMO_LITE_WEIGHTS": json.dumps({"toy_encoder": str(weights)}), "BIONEMO_LITE_PRELOAD": "toy_encoder",
           "BIONEMO_LITE_LOG_FORMAT": "json"}
    with running_server(factory_at_info, env, tmp) as srv:
        assert srv.wait_ready().status_code == 200
        yield srv


def test_every_line_is_json_and_a_4xx_names_its_request_id(json_server):
    with httpx.Client(base_url=json_server.base_url) as client:
        bad = client.post("/v1/models/toy_encoder/embed", json={"sequences": ["ACJE"]},
                          headers={"X-Request-ID": "client-chosen-42"})
        ok = client.get("/v1/health/live")
    assert bad.status_code == 422 and bad.json()["request_id"] == "client-chosen-42"
    lines = json_lines(json_server.log())
    (access,) = of_request(lines, "client-chosen-42")
    assert access["logger"] == "uvicorn.access" and access["level"] == "INFO"
    assert "POST /v1/models/toy_encoder/embed" in access["message"] and "422" in access["message"]
    (live,) = of_request(lines, ok.headers["x-request-id"])  # a made-up id, logged too
    assert "GET /v1/health/live" in live["message"] and "200" in live["message"]
    started = [line for line in lines if "ready" in line["message"] and line["logger"].startswith("bionemo_lite")]
    assert started and all("request_id" not in line for line in started)  # no request, no id
    assert not any("color_message" in line for line in lines)


def test_a_500_body_and_its_error_log_share_the_request_id(json_server):
    with httpx.Client(base_url=json_server.base_url) as client:
        r = client.post("/v1/models/toy_encoder/score", json={"sequences": ["ACDE"], "method": "crash"})
    assert r.status_code == 500
    request_id = r.json()["request_id"]
    assert request_id == r.headers["x-request-id"]
    mine = of_request(json_lines(json_server.log()), request_id)
    errors = [line for line in mine if line["level"] == "ERROR"]
    assert len(errors) == 1 and errors[0]["logger"] == "bionemo_lite.server.errors"
    assert "RuntimeError: toy plugin bug" in errors[0]["exc_info"]  # the traceback, inside the JSON line
    assert any(line["logger"] == "uvicorn.access" and "500" in line["message"] for line in mine)


def test_cli_log_format_json_with_nothing_loadable(tmp_path):
    """``bionemo-lite serve --log-format json``: the start-up warning and a 503's log line are JSON too."""
    env = {"BIONEMO_LITE_HOME": str(tmp_path / "empty-cache"), "BIONEMO_LITE_DEFAULT_MODEL": "off",
           "BIONEMO_LITE_LOG_LEVEL": "info"}
    missing = tmp_path / "nowhere" / "esm2_t6_8M_UR50D.pt"
    command = cli_serve("--log-format", "json", "--weights", f"esm2_t6_8M_UR50D={missing}")
    with running_server(command, env, tmp_path / "srv") as srv:
        r = httpx.post(f"{srv.base_url}/v1/models/esm2_t6_8M_UR50D/embed", json={"sequences": ["ACDE"]},
                       headers={"X-Request-ID": "probe-503"}, timeout=60)
        unknown = httpx.get(f"{srv.base_url}/v1/models/esm2_t6_8M_UR50X", timeout=10)
        log = srv.log()
    assert r.status_code == 503 and r.json()["request_id"] == "probe-503"
    assert unknown.status_code == 404
    lines = json_lines(log)
    assert any(line["level"] == "WARNING" and "not ready" in line["message"] and "request_id" not in line
               for line in lines)
    mine = of_request(lines, "probe-503")
    assert {line["logger"] for line in mine} == {"bionemo_lite.server.errors", "uvicorn.access"}
    (warning,) = [line for line in mine if line["logger"] == "bionemo_lite.server.errors"]
    assert warning["level"] == "WARNING" and "weights" in warning["message"]
    (access,) = of_request(lines, unknown.json()["request_id"])
    assert "404" in access["message"]


def test_log_format_setting():
    assert Settings().log_format == "text"  # human lines stay the default
    assert Settings(log_format="JSON").log_format == "json"
    with pytest.raises(ValueError, match="log_format"):
        Settings(log_format="xml")


def test_cli_refuses_an_unknown_log_format(tmp_path: Path):
    from bionemo_lite.cli import app

    result = CliRunner().invoke(app, ["serve", "--log-format", "xml"], env={"BIONEMO_LITE_HOME": str(tmp_path)})
    assert result.exit_code == 2
    assert "log_format" in result.output and "json" in result.output
