"""What a ``bionemo-lite`` command prints besides its results: log lines and progress bars.

Our own loggers (``bionemo_lite``, its families and its server) speak from INFO
up, the libraries' only from WARNING (openfold3 logs "Removed 11 hydrogen
atoms." once per residue at INFO). ``-q`` switches off every INFO line and
every progress bar, the libraries' included (transformers' "Loading weights",
huggingface_hub downloads, tqdm), for the duration of one command: `command_scope`
undoes it when the command ends, so commands run in-process (tests, notebooks)
leave no trace.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
from collections.abc import Callable, Iterator

OWN_LOGGERS = ("bionemo_lite",)  # the families (bionemo_lite.zoo) and the server (bionemo_lite.server) too
# Read by the libraries when they are imported later in the command (tqdm reads its TQDM_* at import).
QUIET_ENVIRONMENT = {
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}

_scope: contextvars.ContextVar[contextlib.ExitStack | None] = contextvars.ContextVar(
    "bionemo_lite_command_scope", default=None
)


@contextlib.contextmanager
def command_scope() -> Iterator[None]:
    """The lifetime of one command: what `setup_logging` switches inside it is switched back at its end."""
    stack = contextlib.ExitStack()
    token = _scope.set(stack)
    try:
        with stack:
            yield
    finally:
        _scope.reset(token)


def setup_logging(quiet: bool) -> None:
    """Log to stderr (ours from INFO, the libraries' from WARNING); with `quiet`, no INFO lines or progress bars.

    Quiet mode holds until the enclosing `command_scope` ends (for the rest of
    the process when there is none).
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    if not quiet:
        return
    scope = _scope.get()
    if scope is not None:
        scope.enter_context(quiet_libraries())
    else:
        quiet_libraries().__enter__()


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """No INFO (or DEBUG) line from any logger and no progress bar of transformers / huggingface_hub / tqdm,
    whatever levels and handlers the libraries set up themselves; all restored on exit."""
    saved_env = {key: os.environ.get(key) for key in QUIET_ENVIRONMENT}
    os.environ.update(QUIET_ENVIRONMENT)
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    undo: list[Callable[[], None]] = []
    if "transformers" in sys.modules:  # imported already: its switches count now, not the variables
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        undo.append(lambda: hf_logging.set_verbosity(level))
        if hf_logging.is_progress_bar_enabled():
            hf_logging.disable_progress_bar()
            undo.append(hf_logging.enable_progress_bar)
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

        if not are_progress_bars_disabled():
            disable_progress_bars()
            undo.append(enable_progress_bars)
    try:
        yield
    finally:
        for step in reversed(undo):
            step()
        logging.disable(previous)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
