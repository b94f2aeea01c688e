"""SMILES parsing throughput: RDKit in-process vs in the worker process of `bionemo_lite.smiles_guard`.

What the doors pay for crash isolation: each SMILES is checked as text, parsed,
validated and canonicalised by RDKit (`chem.parse_smiles` + ``MolToSmiles``),
in the calling process or in a spawned worker that gets them in batches of
`smiles_guard.BATCH_SIZE`. Real drug-like SMILES (``esol_delaney.csv`` and
``bbbp.csv`` of the shared data, their ``smiles`` column) are repeated up to
``--count``.

    python benchmarks/smiles_parsing.py --count 10000 --repeat 3
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import platform
import time
from pathlib import Path

from bionemo_lite.smiles_guard import BATCH_SIZE, SmilesParser

ROOT = Path(__file__).resolve().parents[1]
DATA_NAMES = ("esol_delaney.csv", "bbbp.csv")


def default_files() -> list[Path]:
    """The shared data sets, from the checkout's ``shared/`` or the one beside it."""
    for base in (ROOT / "shared", ROOT.parent / "shared", ROOT.parents[1] / "shared"):
        files = [base / "data" / name for name in DATA_NAMES]
        if all(f.exists() for f in files):
            return files
    return []


def create_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", type=Path, help="CSV files with a 'smiles' column (default: shared data)")
    p.add_argument("--count", type=int, default=10_000, help="SMILES parsed per run")
    p.add_argument("--repeat", type=int, default=3, help="runs per mode; the best is reported")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker process counts to measure")
    return p


def read_smiles(files: list[Path], count: int) -> list[str]:
    smiles: list[str] = []
    for path in files:
        with open(path, newline="") as fh:
            smiles += [row["smiles"] for row in csv.DictReader(fh) if row.get("smiles")]
    if not smiles:
        raise SystemExit("no SMILES found: pass CSV files with a 'smiles' column")
    return list(itertools.islice(itertools.cycle(smiles), count))


def timed(parser: SmilesParser, texts: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    out = parser.parse(texts)
    return time.perf_counter() - start, sum(not isinstance(x, str) for x in out)


def run(args: argparse.Namespace) -> None:
    files = args.files or default_files()
    texts = read_smiles(files, args.count)
    print(f"{len(texts)} SMILES from {', '.join(f.name for f in files)}; batches of {BATCH_SIZE}; "
          f"best of {args.repeat}, modes interleaved; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    modes = {"in-process": SmilesParser("inprocess")}
    modes.update({f"worker x{n}": SmilesParser("worker", workers=n) for n in args.workers})
    startup: dict[str, float] = {}
    try:
        for name, parser in modes.items():
            start = time.perf_counter()
            parser.parse(["C"] * parser.workers)  # a worker starts here: spawn + RDKit import, once per process
            startup[name] = time.perf_counter() - start
        best: dict[str, float] = {}
        invalid = 0
        for _ in range(args.repeat):  # interleaved, so a burst of load on a shared machine hits every mode
            for name, parser in modes.items():
                seconds, invalid = timed(parser, texts)
                best[name] = min(best.get(name, seconds), seconds)
    finally:
        for parser in modes.values():
            parser.close()
    base = len(texts) / best["in-process"]
    print(f"({invalid} of them invalid)\n| mode | seconds | molecules/s | vs in-process | first call |\n|---|---|---|---|---|")
    for name in modes:
        rate = len(texts) / best[name]
        print(f"| {name} | {best[name]:.3f} | {rate:,.0f} | {rate / base:.2f}x | {startup[name]:.2f} s |")


if __name__ == "__main__":
    run(create_parser().parse_args())
