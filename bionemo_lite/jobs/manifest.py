"""The SQLite manifest of a batch job: one row per finished record.

A row is keyed by the record id, the sha256 of its input text and a hash of
the job's parameters (model, weights, layers, ...). A record whose text or
parameters changed therefore has no row and is computed again; a record with
a row is never computed twice. Rows are committed once per chunk, so a killed
job loses at most the chunk it was working on; a commit that finds the disk
full is rolled back whole (SQLite's journal) and raised as the `OSError` ENOSPC.

Once every record is in the output the manifest goes; `mark_finished` then
notes on the output which job wrote it, so that job run again has nothing to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..io.atomic import disk_full_errno, probe_disk_full

logger = logging.getLogger(__name__)

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
        try:
            with self._writing():
                self._conn.executescript(_SCHEMA)
                stale = self._conn.execute("DELETE FROM results WHERE params != ?", (self.params,)).rowcount
                text = json.dumps(params, sort_keys=True, default=str)  # kept for people inspecting the file
                self._conn.execute("INSERT OR REPLACE INTO params VALUES (?, ?)", (self.params, text))
                self._conn.execute("DELETE FROM params WHERE key != ?", (self.params,))
                self._conn.commit()
        except BaseException:
            self._conn.close()
            raise
        self.removed_stale = max(stale, 0)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """SQLite's "database or disk is full" (or quota, or size limit) as the `OSError` a plain write would raise.

        SQLite keeps the file consistent: the failed transaction is rolled back
        (on close, or from its journal on the next open).
        """
        try:
            yield
        except sqlite3.Error as exc:
            number = disk_full_errno(exc)
            if number is None and str(getattr(exc, "sqlite_errorname", "")).startswith("SQLITE_IOERR"):
                number = probe_disk_full(self.path)  # SQLite says "disk I/O error" for EDQUOT and EFBIG
            if number is None:
                raise
            raise OSError(number, os.strerror(number), str(self.path)) from exc

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
        with self._writing():
            self._conn.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)", (self.params, record_id, seq_sha256, payload)
            )

    def commit(self) -> None:
        """Make the staged records permanent (all of them or, if this fails, none)."""
        with self._writing():
            self._conn.commit()

    def stored_bytes(self) -> int:
        """The size of the finished records' payloads (what the output will hold, roughly)."""
        row = self._conn.execute("SELECT SUM(LENGTH(payload)) FROM results WHERE params = ?", (self.params,))
        return int(row.fetchone()[0] or 0)

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM results WHERE params = ?", (self.params,)).fetchone()[0])

    def close(self) -> None:
        """Close the connection; anything not committed is rolled back."""
        self._conn.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


FINISHED_XATTR = "user.bionemo_lite.job"


@dataclass(frozen=True)
class FinishedJob:
    """What the output of a job that wrote every record of its input says about that job."""

    digest: str
    n_records: int
    finished_at: str


def mark_finished(output: str | Path, digest: str, n_records: int) -> None:
    """Note on `output` that the job of `digest` (an `InputsDigest`) wrote all its `n_records` records into it.

    A finished job removes its manifest (only the output is left), so the note
    travels with the output itself, as an extended attribute holding the
    output's size and modification time too: an output changed since does not
    count as finished. Best effort: on a file system without user extended
    attributes, the same job run again is simply computed again.
    """
    try:
        stat = os.stat(output)
        note = {"digest": digest, "n_records": n_records, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "finished_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}
        os.setxattr(output, FINISHED_XATTR, json.dumps(note).encode("utf-8"))
    except OSError as exc:
        logger.debug("cannot mark %s as finished: %s", output, exc)


def finished_job(output: str | Path) -> FinishedJob | None:
    """The finished job `mark_finished` noted on `output`, if the output is still as that job wrote it."""
    try:
        note = json.loads(os.getxattr(output, FINISHED_XATTR))
        stat = os.stat(output)
        if (note["size"], note["mtime_ns"]) != (stat.st_size, stat.st_mtime_ns):
            return None
        return FinishedJob(str(note["digest"]), int(note["n_records"]), str(note["finished_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no output, no note (or no extended attributes here), or not ours
