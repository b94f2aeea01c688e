"""A job's identity: what a batch job's results depend on besides the task's own options.

It keys the job manifest together with ``task.params()``: a re-run against
other weights, another device, dtype or numerics mode recomputes every record
instead of resuming. Computed here, from the loaded model, so every door that
runs jobs (the CLI, scripts) keys them the same way.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

from ..io.readers import record_fields
from ..records import Record
from ..results import RecordError
from .manifest import sequence_hash


class Identified(Protocol):
    """What `job_identity` reads of a model: a loaded `BioModel` or a `RemoteModel`."""

    name: str
    device: str
    dtype: str
    weights_path: Path | None
    numerics: str | None


def weights_fingerprint(path: Path) -> dict[str, Any]:
    """Identity of a checkpoint: changed weights mean recomputed results.

    Size and modification time stand in for a content hash (hashing a 2.5 GB
    checkpoint on every run would cost more than it saves).
    """
    path = Path(path).resolve()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return {
        "path": str(path),
        "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files],
    }


def job_identity(model: Identified) -> dict[str, Any]:
    """Model name, weights fingerprint, device, dtype and (where the family has a choice) numerics.

    A model without local weights (a remote one) is identified by where it is
    served instead (its ``weights_path`` is None, its ``device`` the server).
    """
    identity: dict[str, Any] = {
        "model": model.name,
        "weights": weights_fingerprint(model.weights_path) if model.weights_path is not None else None,
        "device": model.device,
        "dtype": model.dtype,
    }
    if model.numerics is not None:
        identity["numerics"] = model.numerics
    return identity


class InputsDigest:
    """A sha256 over a job's parameters and its input, item by item in order.

    Two runs with the same digest write the same output: same parameters
    (``params_hash``), same records (id, text, extra columns) in the same
    order, same unreadable ones. A finished job is recognised by it.
    """

    def __init__(self, params_key: str):
        self._sha = hashlib.sha256(params_key.encode("utf-8"))

    def add(self, item: Record | RecordError) -> None:
        if isinstance(item, RecordError):
            parts: list[Any] = ["error", item.id, item.index, item.reason]
        else:
            parts = ["record", item.id, sequence_hash(item.sequence), record_fields(item)]
        self._sha.update(json.dumps(parts).encode("utf-8") + b"\n")

    def hexdigest(self) -> str:
        return self._sha.hexdigest()
