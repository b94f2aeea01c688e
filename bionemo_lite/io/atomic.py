"""Atomic file writes: a killed job never leaves a truncated file that looks complete.

Also what a full disk looks like to the writers (`disk_full_errno`), a check that
a file of a given size fits before writing it (`ensure_free_space`) and the
clean-up of temporary files a killed writer left behind (`remove_stale_parts`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

# No space left, quota used up, file too large (for the file system or RLIMIT_FSIZE).
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_PART = r"\.[0-9a-f]{12}\.part"
_LIMIT_REACH = 1 << 30  # what one commit of a job may add to its manifest, at most


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
    The published file's mode follows the umask. An `OSError` that names no
    file (a failed ``write``) is given `dest`'s name, for the message.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(dest)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, dest)
    except OSError as exc:
        if exc.filename is None or str(exc.filename) == str(tmp):
            exc.filename = str(dest)
        raise
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


def remove_stale_parts(dest: str | os.PathLike) -> list[Path]:
    """Remove the temporary files `atomic_path` left next to `dest` when its writer was killed; return them.

    Only call it while no one else can be writing `dest` (a batch job holds its output's lock).
    """
    dest = Path(dest)
    return _remove_matching(dest.parent, re.compile(rf"\.{re.escape(dest.name)}{_PART}"))


def remove_stale_parts_in(directory: str | os.PathLike) -> list[Path]:
    """Remove every temporary file `atomic_path` left in `directory` (a folder one job writes alone)."""
    return _remove_matching(Path(directory), re.compile(rf"\..+{_PART}"))


def _remove_matching(directory: Path, pattern: re.Pattern[str]) -> list[Path]:
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


def disk_full_errno(exc: BaseException) -> int | None:
    """ENOSPC, EDQUOT or EFBIG when `exc` says the disk is full, the quota used up or the file too large; else None.

    Also from SQLite ("database or disk is full") and from libraries that
    only put the number into their message (HDF5: "errno = 28").
    """
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return exc.errno
    if not isinstance(exc, (OSError, sqlite3.Error)):
        return None
    if getattr(exc, "sqlite_errorname", None) == "SQLITE_FULL":
        return errno.ENOSPC
    text = str(exc)
    found = re.search(r"errno = (\d+)", text)
    if found and int(found.group(1)) in DISK_FULL_ERRNOS:
        return int(found.group(1))
    named = next((n for n in sorted(DISK_FULL_ERRNOS) if os.strerror(n) in text), None)
    if named is None and "database or disk is full" in text:
        return errno.ENOSPC
    return named


def probe_disk_full(path: str | os.PathLike) -> int | None:
    """Why writing `path` failed when the error does not say (SQLite reports a quota or size limit as "disk I/O error").

    EFBIG when the process's file size limit (``ulimit -f``) is within reach
    of `path`'s size; else 64 KiB are written into a scratch file next to it:
    a full disk or a used-up quota fails that write too. Returns ENOSPC,
    EDQUOT or EFBIG, or None (another cause).
    """
    import resource

    path = Path(path)
    size = path.stat().st_size if path.exists() else 0
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and size + _LIMIT_REACH >= limit:
        return errno.EFBIG
    tmp = _create_temporary(path)
    try:
        fd = os.open(tmp, os.O_WRONLY)
        try:
            os.write(fd, bytes(1 << 16))
        except OSError as exc:
            return exc.errno if exc.errno in DISK_FULL_ERRNOS else None
        finally:
            os.close(fd)
    except OSError as exc:  # not even the scratch file could be created
        return exc.errno if exc.errno in DISK_FULL_ERRNOS else None
    finally:
        tmp.unlink(missing_ok=True)
    return None


def ensure_free_space(dest: str | os.PathLike, nbytes: int) -> None:
    """Raise ENOSPC, naming `dest`, unless `nbytes` are free on its file system: before a long write, not after.

    A quota is not seen here (``statvfs`` knows only the file system); a
    write past it still fails with EDQUOT where it happens.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if nbytes > 0 and shutil.disk_usage(dest.parent).free < nbytes:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dest))
