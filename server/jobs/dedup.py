"""Dedup across jobs: finished records served from the store's record cache instead of computed again.

A record's key is the job's parameters hash (model name, weights fingerprint,
device, dtype, numerics, the task's options, the verb: `params_hash` of what
`run_job` keys its manifest with) and the sha256 of its sequence. Before a job
runs, the payloads the cache holds for its sequences are written into the
job's own manifest under the record ids of this job, so `run_job` counts them
as resumed and computes only the rest; after it, the job's new payloads go
into the cache. Payloads are stored as the task encodes them, so a cached record
decodes exactly as a computed one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bionemo_lite.jobs import Manifest, sequence_hash
from bionemo_lite.records import Record

from .store import JobStore


def prefill(store: JobStore, key: str, source: Any, manifest_path: Path, params: Mapping[str, Any]) -> int:
    """Copy the cached payloads of `source`'s records into the manifest; how many were not there yet."""
    wanted: dict[str, list[str]] = {}
    for item in source.items():
        if isinstance(item, Record):
            wanted.setdefault(sequence_hash(item.sequence), []).append(item.id)
    if not wanted:
        return 0
    found = store.cached(key, list(wanted))
    if not found:
        return 0
    added = 0
    with Manifest(manifest_path, params) as manifest:
        for sha, payload in found.items():
            for rid in wanted[sha]:
                if not manifest.is_done(rid, sha):
                    manifest.add(rid, sha, payload)
                    added += 1
        manifest.commit()
    return added


def remember(store: JobStore, key: str, manifest_path: Path, params: Mapping[str, Any]) -> int:
    """Put the finished payloads of a job's manifest into the cache; how many were new."""
    if not manifest_path.exists():
        return 0
    from bionemo_lite.jobs import params_hash

    conn = sqlite3.connect(manifest_path)
    try:
        rows = conn.execute("SELECT seq_sha256, payload FROM results WHERE params = ?", (params_hash(params),))
        items = {sha: bytes(payload) for sha, payload in rows}
    finally:
        conn.close()
    return store.remember(key, items.items())
