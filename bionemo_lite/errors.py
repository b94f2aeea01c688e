"""The exception hierarchy. Every error a user can cause is a `BionemoLiteError`.

Front doors map them without guessing: `InvalidInputError` is HTTP 422 and a
per-record failure in batch jobs, `UnknownModelError` is 404,
`WeightsNotFoundError` is 503.
"""

from __future__ import annotations

from collections.abc import Sequence


class BionemoLiteError(Exception):
    """Base class of every error raised on purpose by bionemo-lite."""


class InvalidInputError(BionemoLiteError, ValueError):
    """An input record cannot be processed.

    Attributes:
        record: the record's id, or its 0-based index when it has none.
        position: 1-based position in the record where the problem is, if any.
        reason: what is wrong, in words.
    """

    def __init__(self, reason: str, *, record: str | int | None = None, position: int | None = None):
        self.record = record
        self.position = position
        self.reason = reason
        where = ""
        if record is not None:
            where = f"record {record!r}"
            if position is not None:
                where += f", position {position}"
            where += ": "
        super().__init__(f"{where}{reason}")

    def to_dict(self) -> dict:
        return {"record": self.record, "position": self.position, "reason": self.reason}


class UnknownModelError(BionemoLiteError, KeyError):
    """No registered model has this name."""

    def __init__(self, name: str, close_matches: Sequence[str] = ()):
        self.name = name
        self.close_matches = list(close_matches)
        hint = f"; did you mean {', '.join(self.close_matches)}?" if self.close_matches else ""
        super().__init__(f"unknown model {name!r}{hint} (see `bionemo-lite models`)")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class WeightsNotFoundError(BionemoLiteError, FileNotFoundError):
    """The weights of a model are neither at the given path nor in the cache."""

    def __init__(self, model: str, filename: str, searched: Sequence[str], how_to_get: str):
        self.model = model
        self.filename = filename
        self.searched = list(searched)
        self.how_to_get = how_to_get
        super().__init__(
            f"weights for {model!r} not found: looked for {filename!r} in "
            f"{', '.join(self.searched) or '(nowhere)'}. {how_to_get}"
        )

    def __str__(self) -> str:
        return self.args[0]


class CheckpointError(BionemoLiteError):
    """A checkpoint file exists but is not in a format (or shape) the plugin can load."""


class UnsupportedVerbError(BionemoLiteError):
    """The model does not have the requested verb (embed, fold, generate, score, ...)."""

    def __init__(self, model: str, verb: str, verbs: Sequence[str]):
        self.model, self.verb, self.verbs = model, verb, list(verbs)
        super().__init__(f"model {model!r} cannot {verb}; it supports: {', '.join(sorted(verbs))}")


class DownloadError(BionemoLiteError):
    """A weight download failed or its checksum did not match."""


class DeviceUnavailableError(BionemoLiteError, ValueError):
    """The requested device (``cuda``, ``cuda:3``, ``mps``) does not exist on this machine."""


class BackendUnavailableError(BionemoLiteError):
    """A serving backend (e.g. Triton) cannot be reached."""


# ---- bounded, cancellable work (the HTTP service's budget, deadline and cancellation)


class RequestCancelledError(BionemoLiteError):
    """The call was cancelled (client gone, deadline passed, server shutting down) and stopped
    at a batch boundary (`bionemo_lite.cancellation`)."""


class OverBudgetError(BionemoLiteError):
    """A request would cost more compute than the service allows for one request.

    Attributes:
        verb: the verb asked for.
        cost: the request's cost, in `unit`.
        budget: the most one request may cost, in `unit`.
        unit: what is counted (e.g. residue-passes).
        setting: the setting that raises the budget.
        batch_command: the batch job that runs the same work without a budget.
    """

    def __init__(self, verb: str, cost: int, budget: int, unit: str, setting: str, batch_command: str):
        self.verb, self.cost, self.budget, self.unit = verb, cost, budget, unit
        self.setting, self.batch_command = setting, batch_command
        super().__init__(
            f"this {verb} request costs {cost:,} {unit}, over the budget of {budget:,} for one request; "
            f"raise it with {setting}, or run the same work as a batch job: {batch_command}")

    def to_dict(self) -> dict:
        return {"verb": self.verb, "cost": self.cost, "budget": self.budget, "unit": self.unit,
                "setting": self.setting, "batch_command": self.batch_command}


# ---- batch jobs: the output's file system and the output's lock.
class DiskFullError(BionemoLiteError):
    """A job could not write a file: no space left on the device, the quota is used up or the file is too large.

    Attributes:
        path: the file that could not be written.
        reason: the system's words for it (``No space left on device``, ...).
    """

    def __init__(self, path: object, reason: str, hint: str = ""):
        self.path = path
        self.reason = reason
        super().__init__(f"cannot write {str(path)!r}: {reason}. {hint}".rstrip())


class JobLockedError(BionemoLiteError):
    """Another job is writing the same output (its lock file names the process)."""

    def __init__(self, output: object, lock_path: object, holder: str):
        self.output, self.lock_path, self.holder = output, lock_path, holder
        super().__init__(
            f"another job is writing {str(output)!r}: {holder}. Wait for it to finish (or run this command with "
            f"--wait), or stop it; its lock is {str(lock_path)!r}"
        )


# ---- relax (bionemo_lite/relax.py)


class RelaxUnavailableError(BionemoLiteError):
    """``relax=True`` was asked for but OpenMM / PDBFixer (the ``[relax]`` extra) are not installed."""


class RelaxError(InvalidInputError):
    """A predicted structure cannot be relaxed (a ligand, a non-standard residue, a failed minimisation);
    a per-record failure like any other bad input."""


# ---- fine-tuning: a fine-tuned model's card against the base weights found at load time.
class BaseWeightsMismatchError(CheckpointError):
    """A fine-tune's card names base weights (by sha256) other than the ones found at load time.

    Attributes:
        model: the fine-tune; base: its base model; expected / found: the sha256 digests; path: what was hashed.
    """

    def __init__(self, model: str, base: str, expected: str, found: str, path: object):
        self.model, self.base, self.expected, self.found, self.path = model, base, expected, found, path
        super().__init__(
            f"{model}: it was fine-tuned on {base} weights with sha256 {expected[:16]}..., but the weights found at "
            f"{str(path)!r} have sha256 {found[:16]}...; pass the base checkpoint it was trained on "
            "(Python: base_weights=...; CLI: --base-weights PATH)"
        )
