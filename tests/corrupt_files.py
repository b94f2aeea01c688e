"""Damaged and malicious weight files, for the checks that every loader refuses them cleanly.

`damage` overwrites a real weight file (written by a family's fixtures) with
one of `DAMAGES`: a pickle that would run code on load (in torch's zip format
and as a bare pickle), a text file, random bytes, an empty file, or the first
half of the original (a cut-off download). The code-running pickle would
create a marker directory; `assert_refused` checks that it was not created and
that the error is a `CheckpointError` naming the file the user gave.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bionemo_lite.errors import CheckpointError

DAMAGES = ("code_in_torch_zip", "code_in_pickle", "text", "random_bytes", "empty", "cut_off")


class RunsCode:
    """Unpickling this calls ``os.makedirs(marker)``: what a malicious checkpoint would do, harmlessly."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def damage(path: Path, kind: str, marker: Path) -> Path:
    """Overwrite `path` with damage of `kind`; returns `path`."""
    if kind == "code_in_torch_zip":
        torch.save({"model": RunsCode(marker), "state_dict": {"w": RunsCode(marker)}}, path)
    elif kind == "code_in_pickle":
        path.write_bytes(pickle.dumps({"model": RunsCode(marker)}, protocol=2))
    elif kind == "text":
        path.write_bytes(b"this is not a checkpoint\n")  # torch's unpickler fails with an IndexError on it
    elif kind == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "cut_off":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        raise ValueError(kind)
    return path


def assert_refused(load: Callable[[], Any], named: Path | str, marker: Path) -> CheckpointError:
    """`load()` raises a `CheckpointError` whose message names `named`, and runs no code."""
    with pytest.raises(CheckpointError) as err:
        load()
    assert not marker.exists(), "unpickling ran code"
    assert str(named) in str(err.value), f"the error does not name {named}: {err.value}"
    return err.value
