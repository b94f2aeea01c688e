"""ESM-2 served by Triton under concurrent clients, against the same model in-process (the ceiling).

Writes random weights with a variant's published architecture (speed does not
depend on the values), exports them with ``bionemo-lite export`` (python
backend, dynamic batching), starts ``tritonserver``, and drives it with N
concurrent clients that each send one sequence per request, back to back.
Then the same model runs in-process, offline, in full batches: what the GPU
can do without any serving in the way.

    # the GPU run the project reports (H100, esm2_t33_650M_UR50D architecture, fp16)
    python benchmarks/triton_esm2.py --device cuda --dtype float16
    # a quick CPU run with a tiny network
    python benchmarks/triton_esm2.py --device cpu --arch tiny --duration 15 --threads 1

Prints a table (requests/s, tokens/s, p50/p99 latency, mean Triton batch);
``--json PATH`` saves it too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ARCHS = {
    "650M": {"name": "esm2_t33_650M_UR50D", "num_layers": 33, "embed_dim": 1280, "attention_heads": 20},
    "tiny": {"name": "esm2_t6_8M_UR50D", "num_layers": 3, "embed_dim": 48, "attention_heads": 4},
}
RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


def create_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=sorted(ARCHS), default="650M", help="network shape of the random weights")
    p.add_argument("--weights", type=Path, help="use this checkpoint instead of random weights")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    p.add_argument("--dtype", default=None, help="float32 / float16 / bfloat16 (default: the family's)")
    p.add_argument("--clients", type=int, default=64, help="concurrent clients")
    p.add_argument("--length", type=int, default=300, help="residues per sequence")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of measured load")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds of load before measuring")
    p.add_argument("--protocol", choices=["http", "grpc"], default="http")
    p.add_argument("--pooling", default="mean")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--max-queue-delay-us", type=int, default=2000)
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="CPU threads per model instance (and in-process)")
    p.add_argument("--offline-sequences", type=int, default=1024, help="sequences for the in-process ceiling")
    p.add_argument("--workdir", type=Path, default=None, help="where weights, repository and log go (default: temp)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p


def write_random_checkpoint(folder: Path, arch: dict[str, Any]) -> Path:
    """A fair-esm layout ``.pt`` of an `ESM2Network` with its default (random) initialisation."""
    import argparse as _argparse

    import torch

    from bionemo_lite.zoo.esm2.network import Esm2Arch, ESM2Network

    torch.manual_seed(0)
    network = ESM2Network(Esm2Arch(arch["num_layers"], arch["embed_dim"], arch["attention_heads"]))
    body = {("encoder." if k.startswith("lm_head.") else "encoder.sentence_encoder.") + k: v
            for k, v in network.state_dict().items()}
    cfg = _argparse.Namespace(encoder_layers=arch["num_layers"], encoder_embed_dim=arch["embed_dim"],
                              encoder_ffn_embed_dim=4 * arch["embed_dim"],
                              encoder_attention_heads=arch["attention_heads"], token_dropout=True)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{arch['name']}.pt"
    torch.save({"model": body, "cfg": {"model": cfg}}, path)
    return path


def random_sequences(count: int, length: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["M" + "".join(rng.choice(RESIDUES) for _ in range(length - 1)) for _ in range(count)]


async def drive(url: str, protocol: str, name: str, clients: int, length: int, pooling: str,
                warmup: float, duration: float) -> dict[str, Any]:
    """`clients` loops sending one sequence per request; latencies of requests started in the window."""
    from bionemo_lite.triton.client import AsyncTritonClient

    client = AsyncTritonClient(url, protocol)  # type: ignore[arg-type]
    pool = random_sequences(256, length, seed=1)
    latencies: list[float] = []
    failures = 0
    start = time.perf_counter()
    measure_from, measure_to = start + warmup, start + warmup + duration

    async def one_client(k: int) -> None:
        nonlocal failures
        i = k
        while time.perf_counter() < measure_to:
            began = time.perf_counter()
            try:
                await client.embed(name, [pool[i % len(pool)]], pooling=pooling)
            except Exception as exc:  # a benchmark counts failures instead of stopping
                failures += 1
                print(f"request failed: {exc}", file=sys.stderr)
                continue
            ended = time.perf_counter()
            if measure_from <= began and ended <= measure_to:
                latencies.append(ended - began)
            i += clients

    try:
        before = await client.batching(name)
        await asyncio.gather(*(one_client(k) for k in range(clients)))
        await asyncio.sleep(1.0)  # Triton's statistics land just after the answers
        after = await client.batching(name)
    finally:
        await client.close()
    executions = after.execution_count - before.execution_count
    inferences = after.inference_count - before.inference_count
    return {
        "requests_per_s": len(latencies) / duration,
        "tokens_per_s": len(latencies) * length / duration,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * sorted(latencies)[math.ceil(0.99 * len(latencies)) - 1] if latencies else float("nan"),
        "requests": len(latencies),
        "failures": failures,
        "mean_batch": inferences / executions if executions else float("nan"),
    }


def offline_ceiling(name: str, weights: Path, device: str, dtype: str | None, count: int, length: int,
                    batch: int, pooling: str) -> dict[str, Any]:
    """The same model in this process, full batches of `batch` sequences, no serving."""
    import torch

    import bionemo_lite

    model = bionemo_lite.load(name, weights=weights, device=device, dtype=dtype)
    seqs = random_sequences(count, length, seed=2)
    budget = batch * (length + 2)
    model.embed(seqs[:batch], pooling=pooling, tokens_per_batch=budget)  # warm-up (kernels, allocator)
    if device == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    model.embed(seqs, pooling=pooling, tokens_per_batch=budget)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    model.close()
    return {"requests_per_s": count / seconds, "tokens_per_s": count * length / seconds,
            "p50_ms": float("nan"), "p99_ms": float("nan"), "requests": count, "failures": 0,
            "mean_batch": float(batch)}


def print_table(rows: list[tuple[str, dict[str, Any]]]) -> None:
    header = ["mode", "sequences/s", "tokens/s", "p50 ms", "p99 ms", "mean batch", "requests", "failures"]
    lines = [header] + [
        [mode, f"{r['requests_per_s']:.1f}", f"{r['tokens_per_s']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
         f"{r['mean_batch']:.1f}", str(r["requests"]), str(r["failures"])]
        for mode, r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths))))


def main(argv: list[str] | None = None) -> int:
    args = create_parser().parse_args(argv)
    from bionemo_lite.triton.export import export_model
    from bionemo_lite.triton.launch import TritonServer

    arch = ARCHS[args.arch]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="triton-esm2-bench-"))
    weights = args.weights or write_random_checkpoint(workdir / "weights", arch)
    kind = "gpu" if args.device == "cuda" else "cpu"
    report = export_model(arch["name"], workdir / "repository", weights=weights, verbs=["embed"],
                          max_batch_size=args.max_batch_size, instances=args.instances, kind=kind,
                          max_queue_delay_us=args.max_queue_delay_us, dtype=args.dtype, num_threads=args.threads)
    print(f"exported {arch['name']} ({args.arch} architecture) to {report.repository}", file=sys.stderr)
    with TritonServer(workdir / "repository", log_path=workdir / "tritonserver.log", startup_timeout=900) as server:
        url = server.http_url if args.protocol == "http" else server.grpc_url
        served = asyncio.run(drive(url, args.protocol, arch["name"], args.clients, args.length, args.pooling,
                                   args.warmup, args.duration))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    ceiling = offline_ceiling(arch["name"], weights, args.device, args.dtype, args.offline_sequences, args.length,
                              args.max_batch_size, args.pooling)
    rows = [(f"Triton {args.protocol}, {args.clients} clients", served), ("in-process offline (ceiling)", ceiling)]
    print(f"\nESM-2 {args.arch} architecture, {args.length}-residue sequences, {args.device}, dtype "
          f"{args.dtype or 'default'}, pooling {args.pooling}, {platform.node()}")
    print_table(rows)
    print(f"Triton reaches {100 * served['requests_per_s'] / ceiling['requests_per_s']:.0f}% of the in-process ceiling")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "results": dict(rows)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
