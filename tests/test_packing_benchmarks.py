"""The GPU suite stays runnable: its dry run parses every step's arguments (no GPU here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # three interpreters start (one imports the Triton benchmark)
def test_gpu_suite_dry_run_parses_every_step(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_suite.sh"), "--dry-run", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "esm2_t33_650M_UR50D on cuda in bfloat16" in proc.stdout
    assert "lengths [300, 1000]" in proc.stdout
    assert "dry run ok" in proc.stdout


def test_the_tuning_sweep_parses_its_grid():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "esm2_tuning.py"), "--dry-run", "--dtype", "bf16",
                           "--budgets", "4096,16384", "--thread-counts", "1,2"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "bfloat16, budgets [4096, 16384] x threads [1, 2]" in proc.stdout
