"""Helpers for the API-key tests: the real ``bionemo-lite keys`` CLI in a subprocess, and error-body checks."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

CLI = [sys.executable, "-m", "bionemo_lite.cli"]


def keys_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``bionemo-lite keys ARGS`` in a fresh process, as a user runs it (not from the checkout: no
    ``server/`` folder on ``sys.path``)."""
    base = {k: v for k, v in os.environ.items() if k != "BIONEMO_LITE_API_KEYS"}
    return subprocess.run([*CLI, "keys", *args], capture_output=True, text=True, timeout=120,
                          env={**base, **(env or {})}, cwd=tempfile.gettempdir())


def add_key(file: Path, name: str, *extra: str) -> str:
    done = keys_cli("add", name, "--file", str(file), *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error_body(r: httpx.Response, status: int, error: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == error and body["detail"]
    assert body["request_id"] == r.headers["x-request-id"]
    return body
