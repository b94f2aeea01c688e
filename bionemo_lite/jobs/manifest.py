"""The SQLite manifest of a batch job: one row per finished record.

A row is keyed by the record id, the sha256 of its input text and a hash of
the job's parameters (model, weights, layers, ...). A record whose text or
parameters changed therefore has no row and is computed again; a record with
a row is never computed twice. Rows are committed once per chunk, so a killed
job loses at most the chunk it was working on.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS params (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    params TEXT NOT NULL,
    id TEXT NOT NULL,
    seq_sha256 TEXT NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (params, id, seq_sha256)
);
"""


def sequence_hash(sequence: str) -> str:
    """sha256 of a record's input text, as stored in the manifest."""
    return hashlib.sha256(sequence.encode("utf-8")).hexdigest()


def params_hash(params: Mapping[str, Any]) -> str:
    """A stable hash of the job's parameters (JSON with sorted keys)."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Manifest:
    """Finished results of one job's output, stored next to it.

    Rows written under other parameters (an earlier run of a changed job to
    the same output) are removed on open: their output is about to be replaced.

    Args:
        path: the SQLite file (``OUTPUT.job.sqlite``).
        params: everything that changes a record's result.
    """

    def __init__(self, path: str | Path, params: Mapping[str, Any]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.params = params_hash(params)
        self._conn = sqlite3.connect(self.path)
        self._conn.executescript(_SCHEMA)
        stale = self._conn.execute("DELETE FROM results WHERE params != ?", (self.params,)).rowcount
        text = json.dumps(params, sort_keys=True, default=str)  # kept for people inspecting the file
        self._conn.execute("INSERT OR REPLACE INTO params VALUES (?, ?)", (self.params, text))
        self._conn.execute("DELETE FROM params WHERE key != ?", (self.params,))
        self._conn.commit()
        self.removed_stale = max(stale, 0)

    def get(self, record_id: str, seq_sha256: str) -> bytes | None:
        """The stored payload of a finished record, or None."""
        row = self._conn.execute(
            "SELECT payload FROM results WHERE params = ? AND id = ? AND seq_sha256 = ?",
            (self.params, record_id, seq_sha256),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def is_done(self, record_id: str, seq_sha256: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM results WHERE params = ? AND id = ? AND seq_sha256 = ?",
            (self.params, record_id, seq_sha256),
        ).fetchone()
        return row is not None

    def add(self, record_id: str, seq_sha256: str, payload: bytes) -> None:
        """Stage a finished record (visible to others after `commit`)."""
        self._conn.execute(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)", (self.params, record_id, seq_sha256, payload)
        )

    def commit(self) -> None:
        self._conn.commit()

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM results WHERE params = ?", (self.params,)).fetchone()[0])

    def close(self) -> None:
        """Close the connection; anything not committed is rolled back."""
        self._conn.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
