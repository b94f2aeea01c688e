"""Cancelling model work at batch boundaries: a token per call, checked between batches.

A front door that may give up on a call (the HTTP service, when the client
disconnects, the deadline passes or the server shuts down) installs a
`CancelToken` in the thread that runs it; the loops of the core and of the
families call `raise_if_cancelled()` between batches (token batches, PLL
passes, recycles, decoding steps), so a cancelled call stops within one batch
and frees its model. Without a token installed (Python API, CLI jobs) the
check is one context-variable read.

    token = CancelToken()
    with installed(token):           # in the worker thread
        options.run(model, records)  # raises RequestCancelledError once token.cancel() was called
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from .errors import RequestCancelledError

T = TypeVar("T")
_current: contextvars.ContextVar[CancelToken | None] = contextvars.ContextVar("bionemo_lite_cancel_token",
                                                                              default=None)


class CancelToken:
    """Says whether a call was given up on, and why; safe to cancel from any thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask the call to stop at its next batch boundary (the first reason is kept)."""
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raises:
            RequestCancelledError: the token was cancelled."""
        if self._event.is_set():
            raise RequestCancelledError(self.reason)


@contextlib.contextmanager
def installed(token: CancelToken) -> Iterator[CancelToken]:
    """Within the block (in this thread), `raise_if_cancelled` checks `token`."""
    reset = _current.set(token)
    try:
        yield token
    finally:
        _current.reset(reset)


def run_with_token(token: CancelToken, fn: Callable[[], T]) -> T:
    """``fn()`` with `token` installed in this (worker) thread; not started at all when already cancelled.

    Raises:
        RequestCancelledError: before `fn` starts, or from its next batch boundary.
    """
    with installed(token):
        token.raise_if_cancelled()
        return fn()


def raise_if_cancelled() -> None:
    """Stop here if the call running in this thread was cancelled (a no-op when none can be).

    Raises:
        RequestCancelledError: the installed token was cancelled.
    """
    token = _current.get()
    if token is not None and token.cancelled:
        raise RequestCancelledError(token.reason)


def _check_before_forward(module: Any, args: Any) -> None:
    raise_if_cancelled()


def cancellable_modules(modules: Iterable[Any]) -> None:
    """Check for cancellation before each forward call of `modules` (torch ``nn.Module``s).

    For loops that live inside a third-party network (e.g. the recycling of
    transformers' ESMFold trunk): registering the check on the blocks the loop
    calls puts a boundary between them without copying the loop.
    """
    for module in modules:
        module.register_forward_pre_hook(_check_before_forward)
