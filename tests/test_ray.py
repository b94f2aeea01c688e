"""The Ray executor on a local Ray cluster (``ray.init(num_cpus=2)``, 2 CPU actors): the same output,
record for record, as the local executor; the same errors; a killed run's parts are not computed again;
and ``bionemo-lite embed --executor ray`` with a tiny ESM-2 checkpoint equals the local CLI job."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import bionemo_lite
from bionemo_lite.cli import app as cli
from bionemo_lite.io import InputFile, read_embeddings
from bionemo_lite.jobs import EmbedTask, job_identity, run_job
from bionemo_lite.jobs.ray_executor import ModelTaskFactory, parts_dir_of, run_ray_job
from jobs_fixtures import SPEC

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent
LETTERS = "ACDEFGHIKLMNPQRSTVWY"


def register_composition() -> None:
    """Run in each actor (`ModelTaskFactory.setup`): the test model, as a plugin would be."""
    if SPEC.name not in bionemo_lite.list_models():
        bionemo_lite.register(SPEC)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
                                       "OMP_NUM_THREADS": "1", "BIONEMO_LITE_HOME": os.environ["BIONEMO_LITE_HOME"]}})
    yield
    ray.shutdown()


def _fasta(path: Path, n: int, seed: int = 0, bad: tuple[int, ...] = ()) -> Path:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        seq = "".join(rng.choice(list(LETTERS), size=int(rng.integers(5, 40))))
        lines.append(f">r{i}\n{'MK1T' if i in bad else seq}\n")
    path.write_text("".join(lines))
    return path


def _factory(weights: Path) -> ModelTaskFactory:
    return ModelTaskFactory("bionemo_lite.jobs.tasks:EmbedTask", SPEC.name, {"weights": str(weights)},
                            {"layers": (0, -1), "pooling": "mean"}, setup="test_ray:register_composition")


def test_ray_matches_the_local_executor_record_for_record(local_ray, tmp_path):
    """Also: a part an actor wrote before a killed driver died is read into the manifest, not computed again."""
    from bionemo_lite.jobs.manifest import sequence_hash
    from bionemo_lite.jobs.ray_executor import _ChunkActor

    register_composition()
    fasta = _fasta(tmp_path / "in.fasta", 300, bad=(7, 150))
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"composition")  # the numpy model reads nothing; the job's identity fingerprints it
    model = bionemo_lite.load(SPEC.name, weights=weights)
    task = EmbedTask(model, layers=(0, -1), pooling="mean")
    local = run_job(InputFile(fasta), task, tmp_path / "local.parquet", params=job_identity(model), chunk_size=32,
                    progress=False)
    output = tmp_path / "ray.parquet"
    # what an actor of a killed run leaves behind: a part of the first 20 records, written by the actor's code
    first = list(InputFile(fasta))[:20]
    _ChunkActor(_factory(weights), str(parts_dir_of(output)))(
        {"id": [r.id for r in first], "sequence": [r.sequence for r in first], "index": [r.index for r in first],
         "seq_sha256": [sequence_hash(r.sequence) for r in first]})
    remote = run_ray_job(InputFile(fasta), task, output, factory=_factory(weights), params=job_identity(model),
                         chunk_size=32, num_actors=2, progress=False)
    assert (remote.n_ok, remote.n_failed) == (local.n_ok, local.n_failed) == (298, 2)
    assert (remote.n_computed, remote.n_skipped_resumed) == (278, 20)
    a, b = read_embeddings(tmp_path / "local.parquet"), read_embeddings(output)
    assert list(a.ids) == list(b.ids)
    for rid in a.ids:
        np.testing.assert_array_equal(a.arrays[rid], b.arrays[rid])
    errors = [list(csv.reader(open(p))) for p in (local.errors_path, remote.errors_path)]
    assert errors[0] == errors[1] and [row[0] for row in errors[1][1:]] == ["r7", "r150"]
    assert not parts_dir_of(output).exists()


def test_cli_executor_ray_equals_the_local_cli_job(local_ray, tmp_path, esm2_fair_checkpoint):
    fasta = _fasta(tmp_path / "in.fasta", 24, seed=2)
    runner = CliRunner()
    common = ["embed", "esm2_t6_8M_UR50D", str(fasta), "--weights", str(esm2_fair_checkpoint), "--numerics",
              "reference", "--chunk-size", "8", "--quiet"]
    local = runner.invoke(cli, [*common, "-o", str(tmp_path / "local.parquet")])
    assert local.exit_code == 0, local.output
    remote = runner.invoke(cli, [*common, "-o", str(tmp_path / "ray.parquet"), "--executor", "ray", "--ray-actors",
                                 "2"])
    assert remote.exit_code == 0, remote.output
    a, b = read_embeddings(tmp_path / "local.parquet"), read_embeddings(tmp_path / "ray.parquet")
    assert list(a.ids) == list(b.ids) == [f"r{i}" for i in range(24)]
    for rid in a.ids:
        # the same records in the same chunks of 8, one model each: the same float32 arithmetic
        np.testing.assert_array_equal(a.arrays[rid], b.arrays[rid])
