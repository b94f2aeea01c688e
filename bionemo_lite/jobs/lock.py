"""One job per output: an exclusive lock on ``OUTPUT.job.lock`` while a job runs.

The lock is ``fcntl.flock`` on the file, so the kernel releases it when the
holder exits in any way (a SIGKILL or a crash too): a lock file left behind by
a killed job is taken over by the next one. The holder writes its PID, host,
command line and start time into the file, for the message a second job
shows. (The ``filelock`` library truncates the file on every attempt, which
would erase those details, hence these few lines of our own.)

The holder removes the file when it is done. A waiter may then hold a lock on
the removed file, so after locking, the path is checked to still be the file
that was locked; if not, the attempt starts over.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from ..errors import JobLockedError

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2


def lock_path(manifest_path: Path) -> Path:
    """``OUTPUT.job.lock`` for ``OUTPUT.job.sqlite`` (``job.lock`` for a fold folder's ``job.sqlite``)."""
    name = manifest_path.name.removesuffix(".sqlite")
    return manifest_path.with_name(f"{name}.lock")


def holder_details(path: Path) -> dict[str, object]:
    """What the lock file says about its holder (empty when it says nothing readable)."""
    try:
        details = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return details if isinstance(details, dict) else {}


def describe_holder(details: dict[str, object]) -> str:
    """``PID 123 on host h, started 2026-01-01 10:00:00 UTC: bionemo-lite embed ...``."""
    if not details:
        return "a process that has not yet written its details"
    text = f"PID {details.get('pid', '?')} on host {details.get('host', '?')}"
    if details.get("started"):
        text += f", started {details['started']}"
    if details.get("command"):
        text += f": {details['command']}"
    return text


class JobLock:
    """Hold the lock of one job's output for the duration of a ``with`` block.

    Args:
        path: the lock file (see `lock_path`).
        output: the output it protects (named in messages).
        wait: wait for the holder to finish instead of raising `JobLockedError`.
    """

    def __init__(self, path: Path, output: Path, *, wait: bool = False):
        self.path = Path(path)
        self.output = Path(output)
        self.wait = wait
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (waiting if asked to); raise `JobLockedError` naming the holder otherwise."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        announced = False
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = describe_holder(holder_details(self.path))
                if not self.wait:
                    raise JobLockedError(self.output, self.path, holder) from None
                if not announced:
                    logger.warning("%s is being written by %s; waiting for it to finish", self.output, holder)
                    announced = True
                time.sleep(POLL_SECONDS)
                continue
            if not self._still_at_path(fd):
                os.close(fd)  # the previous holder removed the file we locked: lock the new one
                continue
            break
        previous = holder_details(self.path)
        if previous:
            logger.warning("%s: taking over the lock left by %s (no longer running)", self.output,
                           describe_holder(previous))
        self._fd = fd
        self._write_details()

    def _still_at_path(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _write_details(self) -> None:
        assert self._fd is not None
        details = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": shlex.join(sys.argv) if sys.argv and sys.argv[0] else sys.executable,
            "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        }
        data = json.dumps(details).encode("utf-8")
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
        except OSError as exc:
            # The lock holds without the details (e.g. on a full disk); a second job's message is vaguer.
            logger.debug("could not write the holder's details into %s: %s", self.path, exc)

    def release(self) -> None:
        """Remove the lock file and release the lock (removing first: see the module's docstring)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None

    def __enter__(self) -> JobLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
