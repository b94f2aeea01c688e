"""Why a model cannot be served, in words a client may read: no server paths, and the commands that fix it.

The core's exceptions name absolute paths (the cache folder, the file that
failed); those stay in the server log. What the readiness probe, the model
listing and 503 bodies show is a `Problem`: the model, the file by name, the
reason code and the exact commands that fix it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bionemo_lite.errors import BionemoLiteError, CheckpointError, DownloadError, WeightsNotFoundError
from bionemo_lite.registry import get_spec
from bionemo_lite.spec import ModelSpec
from bionemo_lite.weights import pull_command, weights_placeholder

# An absolute POSIX path of two or more parts, not part of a URL ("https://host/a/b") or a word.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])~?(?:/[^\s'\"`,;:()<>\[\]{}|]+){2,}")


def redact_paths(text: str) -> str:
    """`text` with every absolute path replaced by its last part (``/srv/w/esm.pt`` -> ``esm.pt``)."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def root_cause(error: BaseException) -> str:
    """The innermost chained error in a few words, e.g. ``ConnectError: [Errno -2] Name or service not known``."""
    while error.__cause__ is not None:
        error = error.__cause__
    return redact_paths(f"{type(error).__name__}: {error}")


@dataclass(frozen=True)
class Problem:
    """One model the service cannot serve (yet).

    Attributes:
        model: the registered name.
        reason: ``weights_not_found``, ``model_unavailable`` (the checkpoint cannot be
            read), ``download_failed`` or ``load_failed`` (an unexpected error; see the log).
        file: the checkpoint file (or folder) by name, never by its server path.
        detail: one sentence that ends with the fix.
        fix: the commands, each runnable as written once the placeholder path is filled in.
    """

    model: str
    reason: str
    file: str | None
    detail: str
    fix: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "file": self.file, "reason": self.reason, "detail": self.detail,
                "fix": list(self.fix)}


def _serve_with(spec: ModelSpec, file: str) -> tuple[str, str]:
    given = f"{spec.name}=/path/to/{file}"
    return f'make serve WEIGHTS="{given}"', f"bionemo-lite serve --weights {given}"


def _sentence(commands: tuple[str, ...], pull: str | None) -> str:
    restart = [c for c in commands if c != pull]
    passing = f"restart the service with the file: `{restart[0]}` (or `{restart[1]}`)"
    if pull is None:
        return f"Fix: {passing}."
    return f"Fix: run `{pull}` where the service runs (the model loads then, without a restart), or {passing}."


def weights_missing(spec: ModelSpec, given: str | None, download_error: str | None = None) -> Problem:
    """No checkpoint for `spec`: nothing at the path `given` in the service's weights, or nothing cached
    (and, with `download_error`, the automatic download failed: its root cause, path-free)."""
    if given is not None:
        file = Path(given).name or weights_placeholder(spec)
        commands = _serve_with(spec, file)
        where = f"the file given for it in the service's weights ({file}) does not exist"
        return Problem(spec.name, "weights_not_found", file,
                       f"{spec.name}: weights not found: {where}. {_sentence(commands, None)}", commands)
    file = weights_placeholder(spec)
    pull = pull_command(spec)
    commands = ((pull,) if pull else ()) + _serve_with(spec, file)
    where = f"{file} is not in the weight cache"
    if download_error:
        where += f", and downloading it at start-up failed ({download_error})"
    return Problem(spec.name, "weights_not_found", file,
                   f"{spec.name}: weights not found: {where}. {_sentence(commands, pull)}", commands)


def checkpoint_unreadable(spec: ModelSpec, given: str | None, error: CheckpointError) -> Problem:
    """The checkpoint of `spec` is there but its plugin cannot read it."""
    file = Path(given).name if given else weights_placeholder(spec)
    commands = _serve_with(spec, file)
    pull = pull_command(spec)
    if given is None and pull:
        fix = (f"Fix: replace the cached copy (delete it; `bionemo-lite weights list` shows where) and run "
               f"`{pull}`, or restart the service with a good file: `{commands[0]}`.")
        commands = (pull, *commands)
    else:
        fix = _sentence(commands, None)
    reason = redact_paths(str(error)).rstrip(".")
    return Problem(spec.name, "model_unavailable", file,
                   f"{spec.name}: its checkpoint cannot be loaded: {reason}. {fix}", commands)


def nothing_to_serve(default: ModelSpec | None) -> Problem:
    """No preload, no weights, an empty cache and no default model: what would give the service a model."""
    detail = ("no model to serve: no weights or preload were given, the weight cache is empty and "
              "default_model is off (or no registered model).")
    if default is None:
        command = "bionemo-lite serve --weights NAME=/path/to/checkpoint"
        return Problem("", "no_model", None, f"{detail} Fix: restart the service with `{command}`.", (command,))
    file = weights_placeholder(default)
    pull = pull_command(default)
    commands = ((pull,) if pull else ()) + _serve_with(default, file)
    return Problem(default.name, "no_model", file, f"{detail} {_sentence(commands, pull)}", commands)


def problem_of(name: str, error: BaseException, given: str | None) -> Problem:
    """The `Problem` for a failed load (or download) of model `name`.

    Args:
        given: the path the service's weights setting names for this model, if any.
    """
    spec = get_spec(name)
    if isinstance(error, WeightsNotFoundError):
        return weights_missing(spec, given)
    if isinstance(error, CheckpointError):
        return checkpoint_unreadable(spec, given, error)
    if isinstance(error, DownloadError):
        return weights_missing(spec, given, download_error=root_cause(error))
    if isinstance(error, BionemoLiteError):  # e.g. a device or numerics mode this machine or family lacks
        return Problem(name, "model_unavailable", None, f"{name}: cannot be loaded: {redact_paths(str(error))}")
    return Problem(name, "load_failed", None,
                   f"{name}: loading failed with an unexpected error ({type(error).__name__}); the server log "
                   "has the details.")
