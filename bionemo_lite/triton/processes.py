"""A process group and everything in it: find its members, stop them, reap them.

``tritonserver`` runs in a session (and process group) of its own, and the
python backend's stubs (``triton_python_backend_stub``, one per model
instance) inherit that group. When tritonserver dies the stubs live on,
reparented and ignoring SIGTERM, so stopping Triton means stopping its
*group*, not its pid: `stop_group` signals every member, escalates SIGTERM to
SIGKILL after a grace period and waits until none is left.

A process that outlives its parent is reparented to the nearest "subreaper"
(else to init, which in a container may never reap it). `become_subreaper`
makes this process that subreaper, so the orphaned stubs become its children
and `stop_group` reaps them itself.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

import psutil

logger = logging.getLogger(__name__)

# prctl(2) option numbers from <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_POLL_SECONDS = 0.05


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Make orphaned descendants of this process its own children (Linux); False where unsupported."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def signal_when_parent_dies(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` for `subprocess.Popen`: the child gets `sig` when this process dies (Linux).

    So a supervisor that is itself SIGKILLed still takes its server down with it
    (the server then stops its own children). Only for a parent whose other
    threads do not matter between fork and exec (preexec_fn's caveat).
    """
    parent = os.getpid()

    def arm() -> None:  # runs in the child, between fork and exec
        _prctl(_PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), sig)

    return arm


def describe_exit(returncode: int | None) -> str:
    """``"exit code 1"`` or ``"signal 9 (SIGKILL)"`` for a `subprocess` return code."""
    if returncode is None:
        return "no exit status"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"signal {-returncode} ({name})"
    return f"exit code {returncode}"


def _reap_if_child(pid: int) -> bool:
    """Collect `pid`'s exit status if it is a finished child of ours; True when it is gone for good."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child: its own parent (or init) reaps it
        return False
    return done == pid


def group_members(pgid: int) -> list[psutil.Process]:
    """Live processes of process group `pgid` (zombies of ours are reaped on the way, others left out)."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) != pgid:
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                _reap_if_child(proc.pid)
                continue
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
        members.append(proc)
    return members


def signal_group(pgid: int, sig: int) -> None:
    """Send `sig` to every process of group `pgid` (nothing when the group is empty)."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pgid: int, timeout: float) -> list[psutil.Process]:
    """Wait up to `timeout` seconds for group `pgid` to empty; returns who is still there."""
    deadline = time.monotonic() + timeout
    while True:
        alive = group_members(pgid)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(_POLL_SECONDS)


def stop_group(pgid: int, grace: float = 3.0, kill_timeout: float = 10.0) -> int:
    """Stop every process of group `pgid`: SIGTERM, then SIGKILL for those alive after `grace` seconds.

    Returns how many processes were found. Waits until the group is empty (at
    most `kill_timeout` seconds after SIGKILL; a process stuck in the kernel
    is logged, not waited on forever).
    """
    members = group_members(pgid)
    if not members:
        return 0
    signal_group(pgid, signal.SIGTERM)
    alive = _wait_gone(pgid, grace)
    if alive:
        logger.info("%d process(es) of group %d ignored SIGTERM for %.1f s (%s); sending SIGKILL", len(alive), pgid,
                    grace, ", ".join(_name(p) for p in alive))
        signal_group(pgid, signal.SIGKILL)
        left = _wait_gone(pgid, kill_timeout)
        if left:
            logger.error("process(es) of group %d survived SIGKILL: %s", pgid, ", ".join(_name(p) for p in left))
    return len(members)


def kill_group(pgid: int, kill_timeout: float = 10.0) -> None:
    """SIGKILL every process of group `pgid` at once and wait until the group is empty."""
    signal_group(pgid, signal.SIGKILL)
    left = _wait_gone(pgid, kill_timeout)
    if left:
        logger.error("process(es) of group %d survived SIGKILL: %s", pgid, ", ".join(_name(p) for p in left))


def _name(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid} ({proc.name()})"
    except psutil.Error:
        return f"pid {proc.pid}"
