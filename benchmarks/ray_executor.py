"""Batch embedding: the local executor (`run_job`) and the Ray executor (`run_ray_job`, N actors) side by side.

    python benchmarks/ray_executor.py --records 2000 --actors 2 --threads 1

ESM-2 of the published esm2_t6_8M_UR50D shape (6 layers, 320 wide, 20 heads) with random weights in the
fair-esm format, random sequences of 50-300 residues, mean pooling, chunks of 64. Each executor writes its own
output from scratch; the table gives wall seconds (Ray: including the actors' model loads, not ``ray.init``),
records/s, and whether the two outputs are equal record for record.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=2000)
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (driver and each actor)")
    p.add_argument("--chunk-size", type=int, default=64)
    args = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import ray
    import torch

    import bionemo_lite
    from bionemo_lite.io import InputFile, read_embeddings
    from bionemo_lite.jobs import EmbedTask, job_identity, run_job
    from bionemo_lite.jobs.ray_executor import factory_of, run_ray_job
    from bionemo_lite.zoo.esm2.testing import TinyEsm2, write_fair_esm_checkpoint

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    letters = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights = write_fair_esm_checkpoint(folder, "esm2_t6_8M_UR50D", TinyEsm2(6, 320, 20))
        fasta = folder / "in.fasta"
        fasta.write_text("".join(f">r{i}\n{''.join(rng.choice(letters, int(rng.integers(50, 301))))}\n"
                                 for i in range(args.records)))
        model = bionemo_lite.load("esm2_t6_8M_UR50D", weights=weights)
        task = EmbedTask(model, pooling="mean")
        rows = []
        started = time.perf_counter()
        run_job(InputFile(fasta), task, folder / "local.parquet", params=job_identity(model),
                chunk_size=args.chunk_size, progress=False)
        rows.append(("local (run_job, 1 process)", time.perf_counter() - started))
        ray.init(num_cpus=args.actors, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": str(args.threads)}})
        started = time.perf_counter()
        run_ray_job(InputFile(fasta), task, folder / "ray.parquet", factory=factory_of(task, model),
                    params=job_identity(model), chunk_size=args.chunk_size, num_actors=args.actors, progress=False)
        rows.append((f"ray (run_ray_job, {args.actors} actors)", time.perf_counter() - started))
        ray.shutdown()
        a, b = read_embeddings(folder / "local.parquet"), read_embeddings(folder / "ray.parquet")
        equal = list(a.ids) == list(b.ids) and all(np.array_equal(a.arrays[i], b.arrays[i]) for i in a.ids)
        max_diff = max(float(np.max(np.abs(a.arrays[i] - b.arrays[i]))) for i in a.ids)
    print(f"{args.records} records, chunk {args.chunk_size}, {args.threads} torch thread(s) per process; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| executor | seconds | records/s |\n|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {args.records / seconds:.0f} |")
    print(f"outputs equal record for record: {equal} (max abs difference {max_diff:.2e})")


if __name__ == "__main__":
    main()
