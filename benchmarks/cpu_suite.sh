#!/usr/bin/env bash
# The CPU tables of benchmarks/RESULTS.md, one command, on a quiet machine (~25 min on 2 cores):
#   bash benchmarks/cpu_suite.sh [OUT_FILE]     # default benchmarks/cpu-results.md
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmarks/cpu-results.md}"
PY="${PYTHON:-.venv/bin/python}"
run() { echo "== $*" >&2; "$PY" "$@" --out "$OUT" > /dev/null || echo "   failed: $*" >&2; }
run benchmarks/esm2_side_by_side.py --repeat 1
run benchmarks/pll_side_by_side.py --num-seqs 3 --min-len 50 --max-len 120 --repeat 1
run benchmarks/prott5_side_by_side.py --num-seqs 20 --max-len 200 --repeat 2
run benchmarks/esmfold_side_by_side.py --lengths 100 --repeat 2
run benchmarks/precision_accuracy.py --num-seqs 20 --max-len 300 --pll-seqs 2 --repeat 1
run benchmarks/esm2_tuning.py --dtype bf16 --num-seqs 150 --no-warmup --repeat 1 --budgets 4096,8192,16384
echo "tables: $OUT" >&2
