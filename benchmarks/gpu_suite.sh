#!/usr/bin/env bash
# The GPU benchmark suite, one command, < 10 min on one GPU (H100/H200), each step under its own time limit:
#   1. ESM-2 650M embed tok/s, bionemo-lite packed bf16 vs transformers EsmModel bf16 SDPA (64k-token batches)
#   2. ESMFold (full esmfold_v1 shape, random weights) at 300 and 1000 residues vs transformers
#   3. ESM-2 650M served by Triton, 64 HTTP clients, seq/s (benchmarks/triton_esm2.py)
# Tables go to $OUT (or the folder given as the first argument), one markdown file, plus each step's log.
#
#   bash benchmarks/gpu_suite.sh [OUT_DIR]        # on the GPU box, from a fresh checkout
#   bash benchmarks/gpu_suite.sh --dry-run        # here: checks the scripts' arguments, runs nothing
#
# Python: $PYTHON, else .venv/bin/python, else python3; it needs a CUDA torch and this project
# installed (`pip install -e .[test,triton]`); the script installs the project if it is missing
# and an index is reachable. Budgets per step: $STEP1_S, $STEP2_S, $STEP3_S seconds.
set -u -o pipefail
cd "$(dirname "$0")/.."

DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT_DIR="${1:-${OUT:-benchmarks/gpu-results}}"
mkdir -p "$OUT_DIR"
TABLES="$OUT_DIR/gpu_tables.md"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
STEP1_S="${STEP1_S:-200}"
STEP2_S="${STEP2_S:-220}"
STEP3_S="${STEP3_S:-150}"
export BENCH_WORK_DIR="${BENCH_WORK_DIR:-/tmp/bionemo-lite-gpu-bench}"

ESM2=(benchmarks/esm2_side_by_side.py --device cuda --dtype bf16 --variant esm2_t33_650M_UR50D
      --tokens-per-batch 65536 --num-seqs 1000 --repeat 2 --skip "fair-esm,bionemo-lite padded" --out "$TABLES")
FOLD=(benchmarks/esmfold_side_by_side.py --device cuda --dtype bf16 --shape full --lengths 300,1000 --repeat 1
      --out "$TABLES")
TRITON=(benchmarks/triton_esm2.py --device cuda --dtype bfloat16 --arch 650M --clients 64 --length 300
        --duration 30 --warmup 10 --json "$OUT_DIR/triton_esm2.json")

if [ "$DRY" = 1 ]; then
  "$PY" "${ESM2[@]}" --dry-run || exit 1
  "$PY" "${FOLD[@]}" --dry-run || exit 1
  "$PY" "${TRITON[0]}" --help > /dev/null || exit 1
  echo "dry run ok: tables would go to $TABLES"
  exit 0
fi

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "no CUDA torch in $PY: set PYTHON to a python with a CUDA build of torch" >&2
  exit 2
fi
if ! "$PY" -c "import bionemo_lite, transformers" 2>/dev/null; then
  echo "installing the project into $PY ..." >&2
  timeout 300 "$PY" -m pip install -q -e ".[test,triton]" || { echo "install failed (no index reachable?)" >&2; exit 2; }
fi

{
  echo "## GPU suite, $(date -u '+%Y-%m-%d %H:%M') UTC"
  echo
  "$PY" -c "import torch; print('GPU:', torch.cuda.get_device_name(0), '· torch', torch.__version__, '· CUDA', torch.version.cuda)"
  echo
} >> "$TABLES"

status=0
step() {  # name, seconds, command...
  local name="$1" limit="$2"; shift 2
  echo "== $name (limit ${limit}s)" >&2
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc in $((SECONDS - t0))s (log: $OUT_DIR/$name.log)" >&2
  if [ $rc -ne 0 ]; then
    status=1
    printf '%s\n\n' "- step $name: rc=$rc after $((SECONDS - t0)) s (124 = hit its ${limit}s limit); see $name.log" >> "$TABLES"
  fi
}

step esm2_650M_embed "$STEP1_S" "$PY" "${ESM2[@]}"
step esmfold_300_1000 "$STEP2_S" "$PY" "${FOLD[@]}"
step triton_64_clients "$STEP3_S" "$PY" "${TRITON[@]}"
if [ -f "$OUT_DIR/triton_esm2.json" ]; then
  { echo "#### Triton, 64 HTTP clients (benchmarks/triton_esm2.py)"; echo; echo '```'; cat "$OUT_DIR/triton_esm2.json"; echo '```'; echo; } >> "$TABLES"
fi
echo "tables: $TABLES" >&2
exit $status
