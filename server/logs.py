"""Logging of the service: human text (default) or one JSON object per line, uvicorn's access log included.

    bionemo-lite serve --log-format json        # or BIONEMO_LITE_LOG_FORMAT=json
    {"level": "INFO", "logger": "uvicorn.access", "message": "127.0.0.1:5312 - \\"POST /v1/... HTTP/1.1\\" 422",
     "request_id": "3f2a...", "time": "2026-12-02T04:10:00.123+00:00"}

The lines a request's own task writes (uvicorn's access line, the error log of
a 4xx/5xx) carry that request's id (``request_id``, the one its error body and
``X-Request-ID`` header carry), so a client's report can be found in the log.
Lines of the model worker threads carry none: a load or a merged embed call
serves several requests at once.
"""

from __future__ import annotations

import copy
import logging
import logging.config
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from .request_id import current_request_id

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# uvicorn adds a coloured copy of some messages; a JSON line keeps the plain one only.
_NOT_FIELDS = [*RESERVED_ATTRS, "color_message"]


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to records logged while a request is answered (none outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


def json_formatter() -> JsonFormatter:
    """One JSON object per record: time (ISO 8601, UTC), level, logger, message, and extras such as
    ``request_id``; a traceback, when there is one, under ``exc_info``."""
    return JsonFormatter("%(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level", "name": "logger"},
                         timestamp="time", reserved_attrs=_NOT_FIELDS)


def python_level(level: str) -> int:
    """The `logging` level of a uvicorn level name (``trace`` is finer than DEBUG; Python logs it as DEBUG)."""
    return logging.DEBUG if level.lower() == "trace" else logging.getLevelName(level.upper())


def logging_config(log_format: LogFormat, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the whole process: the root logger (ours), and uvicorn's.

    ``text`` keeps uvicorn's own formatters for its lines; ``json`` sends every line,
    uvicorn's access log included, through `json_formatter`. Levels of uvicorn's loggers are
    left to uvicorn (its ``log_level``).
    """
    if log_format == "text":
        from uvicorn.config import LOGGING_CONFIG

        config = copy.deepcopy(LOGGING_CONFIG)
        config["formatters"]["text"] = {"format": TEXT_FORMAT}
        config["handlers"]["text"] = {"class": "logging.StreamHandler", "formatter": "text",
                                      "stream": "ext://sys.stderr"}
        config["root"] = {"handlers": ["text"], "level": python_level(level)}
        return config
    if log_format != "json":
        raise ValueError(f"log format must be 'text' or 'json', not {log_format!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"json": {"()": json_formatter}},
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr",
                              "filters": ["request_id"]}},
        "root": {"handlers": ["json"], "level": python_level(level)},
        # uvicorn's loggers write through the root's handler, not handlers of their own.
        "loggers": {name: {"handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.error",
                                                                           "uvicorn.access")},
    }


def configure_logging(log_format: LogFormat, level: str) -> None:
    """Apply `logging_config` now (for an app started by ``uvicorn --factory``, which has
    configured its own text logging before the app is built)."""
    logging.config.dictConfig(logging_config(log_format, level))
    if log_format == "json":
        logging.captureWarnings(True)  # Python's warnings become JSON lines too, not bare text on stderr
