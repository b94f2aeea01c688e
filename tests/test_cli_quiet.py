"""``-q`` as a user sees it: a real ``bionemo-lite`` process folding with the tiny OpenFold-3, whose
library logs INFO lines of its own (once per residue) and whose stack can draw progress bars."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MODEL = "openbind-2025-06-30-174k"
BIN = Path(sys.executable).parent / "bionemo-lite"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from bionemo_lite.zoo.openfold.testing import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("of3") / "of3-tiny.ckpt", "training", seed=0)


def _fold(checkpoint: Path, tmp_path: Path, *flags: str) -> str:
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">p1\nMKTAYIAKQRQ\n")
    done = subprocess.run([str(BIN), "fold", MODEL, str(fasta), "-o", str(tmp_path / f"out{len(flags)}"),
                           "--weights", str(checkpoint), *flags], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.mark.slow  # two processes importing openfold3 (~10 s each)
def test_quiet_silences_the_libraries_and_plain_keeps_their_noise_out(checkpoint, tmp_path):
    quiet = _fold(checkpoint, tmp_path, "-q")
    assert "INFO" not in quiet and "it/s" not in quiet and "%|" not in quiet
    assert quiet.strip().splitlines()[-1].startswith("wrote 1 records")
    plain = _fold(checkpoint, tmp_path)
    assert "INFO bionemo_lite.cli: loading" in plain  # our own progress lines stay
    assert "INFO openfold3" not in plain  # "Removed 11 hydrogen atoms." once per residue, before
