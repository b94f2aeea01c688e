"""Keep a `TritonServer` running: restart it when it dies, stop it and everything it started on exit.

``bionemo-lite triton serve`` runs its server under a `TritonSupervisor`:

* when tritonserver dies on its own (crash, OOM kill, ``kill -9``), its
  process group is stopped (the orphaned python backend stubs with it), the
  death is reported with its exit code or signal, and the server is started
  again on the same ports after an exponential back-off (`RestartPolicy`);
* when it dies `RestartPolicy.max_failures` times within
  `RestartPolicy.window` seconds (deaths and failed restarts alike), the
  supervisor gives up with `TritonGaveUpError` (the last lines of Triton's log
  in the message);
* on SIGTERM or SIGINT, and whenever `run` returns or raises, the server and
  its whole process group are stopped (SIGTERM, SIGKILL after a grace period)
  and reaped: no stub is left behind. A second signal while stopping is
  ignored, so the stop is never cut short.

    >>> server = TritonServer("model_repository", 8010, 8011, 8012)
    >>> TritonSupervisor(server, RestartPolicy(max_failures=5, window=300)).run()
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from ..errors import BionemoLiteError
from .launch import TritonServer, TritonStartError
from .processes import become_subreaper, describe_exit

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TritonGaveUpError(BionemoLiteError):
    """tritonserver kept dying: the supervisor stopped restarting it."""


@dataclass(frozen=True)
class RestartPolicy:
    """When a dead tritonserver is started again, and when to stop trying.

    Attributes:
        first_delay: seconds before the first restart; each further failure
            within `window` doubles it.
        max_delay: the longest wait between restarts.
        max_failures: give up at this many failures within `window` seconds
            (1: never restart).
        window: seconds over which failures are counted; a server that stays up
            longer than this starts again from `first_delay`.
    """

    first_delay: float = 1.0
    max_delay: float = 30.0
    max_failures: int = 5
    window: float = 300.0

    def __post_init__(self) -> None:
        if self.first_delay < 0 or self.max_delay < self.first_delay:
            raise ValueError(f"restart delays must satisfy 0 <= first_delay <= max_delay, got "
                             f"{self.first_delay} and {self.max_delay}")
        if self.max_failures < 1 or self.window <= 0:
            raise ValueError(f"max_failures must be >= 1 and window > 0, got {self.max_failures} and {self.window}")

    def delay(self, recent_failures: int) -> float | None:
        """Seconds to wait before the next start after `recent_failures` failures in the window; None: give up."""
        if recent_failures >= self.max_failures:
            return None
        return min(self.max_delay, self.first_delay * 2 ** max(recent_failures - 1, 0))


class TritonSupervisor:
    """Runs `server` until a stop signal, restarting it when it dies (see the module docs).

    Args:
        server: the server to keep running (restarted on its own ports, log appended).
        policy: back-off and give-up rule.
        report: where restart and stop messages go (default: this module's logger, warning level).
        handle_signals: turn SIGTERM/SIGINT into a clean stop (only from the main thread).
    """

    def __init__(self, server: TritonServer, policy: RestartPolicy | None = None, *,
                 report: Callable[[str], None] | None = None, handle_signals: bool = True):
        self.server = server
        self.policy = policy or RestartPolicy()
        self.report = report or logger.warning
        self.handle_signals = handle_signals and threading.current_thread() is threading.main_thread()
        self.restarts = 0
        self.stopped_by: signal.Signals | None = None
        self._failures: deque[float] = deque()
        self._stopping = False

    # -- signals -----------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:
            return  # already stopping: let the stop finish (it escalates to SIGKILL by itself)
        self._stopping = True
        self.stopped_by = signal.Signals(signum)
        raise KeyboardInterrupt

    def _install_handlers(self) -> dict[int, object]:
        if not self.handle_signals:
            return {}
        return {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}

    @staticmethod
    def _restore_handlers(previous: dict[int, object]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    # -- running -----------------------------------------------------------------------
    def run(self, on_ready: Callable[[TritonServer], None] | None = None) -> signal.Signals:
        """Start the server and keep it running; returns the signal that stopped it.

        The first start must succeed (its error is raised as it is: a broken
        repository is not retried); `on_ready` is called after it. Each restart
        is reported, with the new pid, through `report`.

        Raises:
            TritonGaveUpError: the server died `policy.max_failures` times within `policy.window` seconds.
            BionemoLiteError: the first start failed.
        """
        become_subreaper()  # orphaned stubs become our children, so we can reap them
        previous = self._install_handlers()
        try:
            self.server.start()
            if on_ready is not None:
                on_ready(self.server)
            while True:
                started = time.monotonic()
                code = self.server.wait()
                self._failed(f"tritonserver (pid {self.server.pgid}) exited with {describe_exit(code)} "
                             f"after {time.monotonic() - started:.1f} s up")
                self._restart()
        except KeyboardInterrupt:
            self._stopping = True
            if self.stopped_by is None:  # Ctrl-C with no handler of ours (another thread, or handlers off)
                self.stopped_by = signal.SIGINT
            return self.stopped_by
        finally:
            self._stopping = True  # a signal from here on must not cut the stop short
            self.server.stop()
            self._restore_handlers(previous)

    def _failed(self, what: str) -> None:
        """Count a failure, stop what is left of the server; give up, or wait out the back-off."""
        began = time.monotonic()
        left = self.server.stop()  # the dead server's group: orphaned stubs, shared memory, work folder
        if left:
            what += f"; stopped {left} process(es) it left behind in {time.monotonic() - began:.1f} s"
        now = time.monotonic()
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.policy.window:
            self._failures.popleft()
        recent = len(self._failures)
        delay = self.policy.delay(recent)
        if delay is None:
            raise TritonGaveUpError(
                f"{what}; it failed {recent} time(s) within {self.policy.window:.0f} s, giving up "
                f"(after {self.restarts} restart(s)). Last lines of {self.server.log_path}:\n{self.server.log_tail()}")
        self.report(f"{what}; restarting in {delay:.1f} s (failure {recent} within {self.policy.window:.0f} s; "
                    f"giving up at {self.policy.max_failures})")
        time.sleep(delay)

    def _restart(self) -> None:
        """Start the server again, counting each failed start as a failure, until it is ready or we give up."""
        while True:
            try:
                self.server.start()
            except TritonStartError as exc:  # the log tail comes with giving up, not with every retry
                self._failed(f"restarting tritonserver failed: {exc.reason}")
                continue
            except BionemoLiteError as exc:  # e.g. the binary or a backend has gone
                self._failed(f"restarting tritonserver failed: {exc}")
                continue
            self.restarts += 1
            self.report(f"tritonserver is ready again (restart {self.restarts}, pid {self.server.pgid})")
            return
