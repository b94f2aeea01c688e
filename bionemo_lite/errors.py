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


# -- relax (bionemo_lite/relax.py) --


class RelaxUnavailableError(BionemoLiteError):
    """``relax=True`` was asked for but OpenMM / PDBFixer (the ``[relax]`` extra) are not installed."""


class RelaxError(InvalidInputError):
    """A predicted structure cannot be relaxed (a ligand, a non-standard residue, a failed minimisation);
    a per-record failure like any other bad input."""
