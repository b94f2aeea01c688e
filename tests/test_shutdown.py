"""Graceful shutdown, measured: SIGTERM under load stops accepting, lets in-flight requests finish
up to the drain bound (``BIONEMO_LITE_SHUTDOWN_TIMEOUT_S``), cancels the rest at their next batch
boundary, and the process exits 0 soon after the bound.

The server runs `bionemo_lite.server.app.serve` (what ``bionemo-lite serve`` runs) with the toy
family; its ``"method": "slow"`` score takes 0.05 s per residue (`server_fixtures.slow_toy_env`).
"""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from server_fixtures import ServerProcess, slow_toy_env, toy_serve

DRAIN_S = 3.0
EXIT_SLACK_S = 5.0  # interpreter exit, closing models, the cancelled batch finishing
SCORE = "/v1/models/toy_encoder/score"


def _start(tmp_path, **extra: str) -> ServerProcess:
    env = slow_toy_env(tmp_path, BIONEMO_LITE_SHUTDOWN_TIMEOUT_S=str(DRAIN_S), BIONEMO_LITE_LOG_LEVEL="info", **extra)
    server = ServerProcess(toy_serve(), env, tmp_path / "server.log")
    server.start()
    assert server.wait_ready().status_code == 200
    return server


def test_sigterm_when_idle_exits_zero_at_once(tmp_path):
    server = _start(tmp_path)
    started = time.monotonic()
    code = server.terminate(timeout=DRAIN_S + EXIT_SLACK_S)
    assert code == 0, server.log()[-3000:]
    assert time.monotonic() - started < EXIT_SLACK_S


def test_sigterm_under_load_drains_then_cancels_and_exits_zero(tmp_path):
    server = _start(tmp_path)
    outcomes: dict[str, httpx.Response | Exception] = {}

    def post(name: str, sequences: list[str]) -> None:
        try:
            outcomes[name] = httpx.post(server.base_url + SCORE, json={"sequences": sequences, "method": "slow"},
                                        timeout=60)
        except httpx.HTTPError as exc:
            outcomes[name] = exc

    # One request that finishes within the drain bound (20 steps, 1 s), then two that cannot
    # (64 s each): the model takes one call at a time, so they queue behind the first.
    quick = threading.Thread(target=post, args=("quick", ["ACDEFGHIKLMNPQRSTVWY"]))
    slow = [threading.Thread(target=post, args=(f"slow{i}", ["ACDEFGHIKLMNPQRSTVWY" * 2] * 32)) for i in range(2)]
    quick.start()
    time.sleep(0.3)
    for t in slow:
        t.start()
    time.sleep(0.5)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    with pytest.raises(httpx.ConnectError):  # no new connections while draining
        httpx.get(server.base_url + "/v1/health/live", timeout=2)
    try:
        code = server.proc.wait(timeout=DRAIN_S + EXIT_SLACK_S + 5)
    finally:
        server.stop()
    took = time.monotonic() - started
    for t in [quick, *slow]:
        t.join(timeout=10)
    print(f"\nSIGTERM under load: exited {code} after {took:.2f} s (drain bound {DRAIN_S} s)")
    assert code == 0, server.log()[-3000:]
    assert DRAIN_S <= took < DRAIN_S + EXIT_SLACK_S, server.log()[-3000:]
    answer = outcomes["quick"]
    assert isinstance(answer, httpx.Response) and answer.status_code == 200, answer
    assert answer.json()["ids"] == ["0"]
    for name in ("slow0", "slow1"):  # cancelled: told so, not left hanging
        cancelled = outcomes[name]
        assert isinstance(cancelled, httpx.Response) and cancelled.status_code == 503, cancelled
        assert cancelled.json()["error"] == "shutting_down"
    assert "Cancel 2 running task(s)" in server.log()
