"""Atomic file writes: a killed job never leaves a truncated file that looks complete."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `dest`; on success it replaces `dest` in one step.

    The temporary file lives in the same directory (so `os.replace` is an
    atomic rename on the same file system) and is removed if the body raises.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    # The data must be on disk before the rename makes it visible under its real name.
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def write_text_atomic(dest: str | os.PathLike, text: str) -> Path:
    """Write `text` to `dest` atomically (UTF-8)."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(dest)
