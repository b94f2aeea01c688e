"""A small real model for the batch-job tests that must not depend on any family.

`CompositionModel` is a `BioModel` with an `embed` and a `score` verb written in
numpy: each residue is a one-hot vector scaled by its layer, so every layer,
pooling and length gives distinct, checkable numbers. It goes through the
core's own validation and batching (`embed_records`), like a plugin does, and
counts the records it is asked to compute.

Also for the jobs' robustness tests: a real small file system (a tmpfs) and
the command line run in a process of its own with this model registered.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from bionemo_lite.encoding import embed_records
from bionemo_lite.errors import InvalidInputError
from bionemo_lite.model import BioModel
from bionemo_lite.pooling import Pooling
from bionemo_lite.records import PROTEIN_ALPHABET, Inputs, Record, prepare_proteins
from bionemo_lite.results import Embeddings, RecordError, Scores
from bionemo_lite.spec import ModelSpec

LETTERS = sorted(PROTEIN_ALPHABET)
NUM_LAYERS = 2
SPEC = ModelSpec(
    name="composition_test",
    family="test",
    verbs=frozenset({"embed", "score"}),
    loader="jobs_fixtures:load",
    max_length=40,
)


def expected_vectors(sequence: str, layer: int) -> np.ndarray:
    """The per-residue rows `CompositionModel` gives `sequence` at absolute `layer`."""
    out = np.zeros((len(sequence), len(LETTERS)), np.float32)
    for i, ch in enumerate(sequence):
        out[i, LETTERS.index(ch)] = float(layer + 1) + i / 100.0
    return out


class CompositionModel(BioModel):
    """A deterministic numpy model; `records_computed` counts records sent to the network.

    Records whose sequence contains ``fail_on`` raise an out-of-memory error when
    they are in a batch, to exercise the OOM path.
    """

    def __init__(self, spec: ModelSpec = SPEC, oom_residue: str | None = None):
        super().__init__(spec, "cpu", "float32")
        self.records_computed = 0
        self.calls = 0
        self.oom_residue = oom_residue

    def _encode(self, records: list[Record], layers: tuple[int, ...], pooling: Pooling) -> list[dict[int, np.ndarray]]:
        if self.oom_residue and any(self.oom_residue in r.sequence for r in records):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.records_computed += len(records)
        out = []
        for r in records:
            per = {}
            for lay in layers:
                rows = expected_vectors(r.sequence, lay)
                per[lay] = rows if pooling.per_position else (rows[0] if pooling.needs_bos else rows.mean(0))
            out.append(per)
        return out

    def embed(self, inputs: Inputs, layer: int | Sequence[int] = -1, pooling: str = "mean", *,
              on_too_long: str = "error", tokens_per_batch: int | None = None) -> Embeddings:
        self.calls += 1
        return embed_records(self.name, inputs, self._encode, num_layers=NUM_LAYERS, max_length=self.max_length,
                             layer=layer, pooling=pooling, on_too_long=on_too_long,
                             tokens_per_batch=tokens_per_batch or 64)

    def score(self, inputs: Inputs, method: str = "pll", mutations: Sequence[str] | None = None, *,
              on_too_long: str = "error", tokens_per_batch: int | None = None) -> Scores:
        self.calls += 1
        records, truncated = prepare_proteins(inputs, self.max_length, on_too_long)
        if method == "pll":
            self.records_computed += len(records)
            values = [-float(sum(LETTERS.index(c) for c in r.sequence)) for r in records]
            return Scores(self.name, method, [r.id for r in records], np.asarray(values), truncated=truncated)
        if method != "masked_marginals" or mutations is None or len(records) != 1:
            raise InvalidInputError(f"unknown method {method!r}")
        wt = records[0].sequence
        values, errors = [], []
        for m in mutations:
            if ":" in m:  # names the wild type, not the mutation: the runner must narrow it down
                raise InvalidInputError("multi-site mutations are not supported", record=records[0].id)
            pos = int(m[1:-1])
            if wt[pos - 1] != m[0]:
                raise InvalidInputError(f"wild type has {wt[pos - 1]} at {pos}", record=records[0].id, position=pos)
            values.append(float(LETTERS.index(m[-1]) - LETTERS.index(m[0])))
        self.records_computed += len(mutations)
        return Scores(self.name, method, [records[0].id] * len(mutations), np.asarray(values), list(mutations),
                      errors=errors)


class PickyModel(CompositionModel):
    """Rejects records the core's validation accepts (like a SMILES parser would), naming them."""

    def __init__(self, reject: str, by: str = "id"):
        super().__init__()
        self.reject = reject
        self.by = by

    def embed(self, inputs: Inputs, layer: int | Sequence[int] = -1, pooling: str = "mean", **kw) -> Embeddings:
        records = list(inputs)
        for i, r in enumerate(records):
            if self.reject in r.sequence:
                which = {"id": r.id, "index": i, "other": "not-a-record-id"}[self.by]
                raise InvalidInputError(f"motif {self.reject} not allowed", record=which)
        return super().embed(records, layer, pooling, **kw)


def load(spec: ModelSpec, path, device: str = "cpu", dtype: str | None = None, **options) -> CompositionModel:
    return CompositionModel(spec)


__all__ = ["CompositionModel", "PickyModel", "RecordError", "SPEC", "can_mount", "expected_vectors", "fill",
           "free_bytes", "load", "small_filesystem", "toy_cli", "toy_env"]

# --- Real small file systems, and jobs in their own processes (test_jobs_robust.py) ---



def can_mount() -> bool:
    """A tmpfs can be mounted here (root, as on the test machines and CI)."""
    return os.geteuid() == 0


@contextlib.contextmanager
def small_filesystem(where: Path, size_bytes: int) -> Iterator[Path]:
    """A real tmpfs of `size_bytes` mounted at `where` for the block: writes past its size fail with ENOSPC."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path, nbytes: int) -> Path:
    """A ballast file taking `nbytes` of its file system (allocated, not sparse)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.posix_fallocate(fd, 0, nbytes)
    finally:
        os.close(fd)
    return path


def free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


TESTS = Path(__file__).resolve().parent
# `bionemo-lite` in a process of its own, with the numpy model registered (no torch to import: starts fast).
TOY_CLI = (
    "import sys, bionemo_lite; from jobs_fixtures import SPEC; bionemo_lite.register(SPEC); "
    "from bionemo_lite.cli import app; sys.argv[0] = 'bionemo-lite'; app()"
)


def toy_cli(*args: str) -> list[str]:
    """The command line of `bionemo-lite ARGS...` with `composition_test` registered (see `toy_env`)."""
    return [sys.executable, "-c", TOY_CLI, *args]


def toy_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}
