"""What the side-by-side benchmark scripts share: arguments, the workload, timing, the table.

Every script runs the peers and bionemo-lite in one process on the same random
weights and the same sequences, and prints one markdown table with tokens/s
and each row's ratio to the best peer (``--out FILE`` also appends it there).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

AMINO = "ACDEFGHIKLMNPQRSTVWY"


def base_parser(doc: str, variant: str, num_seqs: int = 300, min_len: int = 30, max_len: int = 1022) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default=variant, help="published architecture to build with random weights")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="float32", help="float32 | bf16 | bfloat16 | fp16 | float16")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (CPU)")
    p.add_argument("--num-seqs", type=int, default=num_seqs)
    p.add_argument("--min-len", type=int, default=min_len)
    p.add_argument("--max-len", type=int, default=max_len)
    p.add_argument("--tokens-per-batch", type=int, default=4096)
    p.add_argument("--repeat", type=int, default=2, help="timed runs (after one warm-up); the best is kept")
    p.add_argument("--no-warmup", action="store_true", help="skip the warm-up run (long workloads)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", default="", help="comma-separated row names to leave out")
    p.add_argument("--work-dir", type=Path, default=Path(os.environ.get("BENCH_WORK_DIR", "/tmp/bionemo-lite-bench")))
    p.add_argument("--out", type=Path, help="append the table to this markdown file")
    p.add_argument("--dry-run", action="store_true", help="parse the arguments, print the plan, run nothing")
    return p


def torch_dtype(name: str):
    import torch

    aliases = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32"}
    return getattr(torch, aliases.get(name, name))


def dtype_name(name: str) -> str:
    return str(torch_dtype(name)).removeprefix("torch.")


def random_sequences(n: int, min_len: int, max_len: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(AMINO) for _ in range(rng.randint(min_len, max_len))) for _ in range(n)]


def setup(args: argparse.Namespace) -> None:
    import torch

    global WARMUP
    WARMUP = not args.no_warmup
    torch.manual_seed(args.seed)
    if args.device == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    args.work_dir.mkdir(parents=True, exist_ok=True)


def sync(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


WARMUP = True  # `setup` turns it off for --no-warmup


def time_best(
    fn: Callable[[], object], repeat: int, device: str = "cpu", warmup: Callable[[], object] | None = None
) -> float:
    """Seconds of the fastest of `repeat` runs after one warm-up run (unless --no-warmup).

    `warmup`: what to warm up with instead of `fn` itself: other inputs of the same kind, so that
    per-shape caches (oneDNN kernels, compiled graphs) hold what a long-running server has seen,
    not this exact workload's shapes.
    """
    if WARMUP:
        (warmup or fn)()
        sync(device)
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


@dataclass
class Row:
    name: str
    seconds: float
    work: float  # tokens (or molecules) done in `seconds`
    peer: bool
    note: str = ""


def hardware() -> str:
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), model)
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import torch

        if torch.cuda.is_available():
            model += f"; GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"{model}, {os.cpu_count()} CPUs"


def table(title: str, rows: Sequence[Row], unit: str = "tok/s", args: argparse.Namespace | None = None) -> str:
    """The markdown table: every row's rate and its ratio to the fastest peer."""
    import torch

    peers = [r.work / r.seconds for r in rows if r.peer and r.seconds > 0]
    best = max(peers, default=0.0)
    lines = [
        f"#### {title}",
        "",
        f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC · {hardware()} · torch {torch.__version__} · "
        f"threads {torch.get_num_threads()} · `{' '.join([Path(sys.argv[0]).name] + sys.argv[1:])}`",
        "",
        f"| implementation | seconds | {unit} | x best peer | note |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        rate = r.work / r.seconds if r.seconds > 0 else float("nan")
        ratio = f"{rate / best:.2f}" if best else "-"
        who = f"{r.name} (peer)" if r.peer else f"**{r.name}**"
        lines.append(f"| {who} | {r.seconds:.3f} | {rate:,.1f} | {ratio} | {r.note} |")
    text = "\n".join(lines) + "\n"
    if args is not None and args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as fh:
            fh.write(text + "\n")
    return text


def wanted(args: argparse.Namespace, name: str) -> bool:
    return name not in {s.strip() for s in args.skip.split(",") if s.strip()}
