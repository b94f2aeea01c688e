"""Atomic file writes: a killed job never leaves a truncated file that looks complete."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


def _create_temporary(dest: Path) -> Path:
    """An empty new file next to `dest`, with the permissions any file the user creates gets.

    ``tempfile.mkstemp`` would make it 0600 whatever the umask, and the rename
    keeps that mode; opening with 0666 lets the kernel apply the umask (0644
    under the usual 022), as ``open(dest, "w")`` would.
    """
    while True:
        tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        os.close(fd)
        return tmp


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `dest`; on success it replaces `dest` in one step.

    The temporary file lives in the same directory (so `os.replace` is an
    atomic rename on the same file system) and is removed if the body raises.
    The published file's mode follows the umask.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(dest)
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
