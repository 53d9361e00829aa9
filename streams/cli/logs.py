"""Logs for people or for machines: ``TIPSTREAM_LOG_FORMAT`` and ``TIPSTREAM_LOG_LEVEL``.

``json`` writes one object per line on stderr, whatever the record holds (faust's startup
tables and tracebacks are multi-line: they stay inside the JSON string)::

    {"ts": "2025-01-01T12:00:00.123Z", "level": "WARNING", "logger": "streams.worker.pipeline",
     "message": "...", "user_id": "u1", "event_id": "e1", "code": "invalid_json"}

The ids come from ``extra=`` on the log calls that know them (:data:`CONTEXT_FIELDS`). Only
the standard library: a ``logging.Formatter``, and a ``dictConfig`` mapping that faust's
worker takes as its ``logging_config`` (it replaces faust's own colour handler).
"""

from __future__ import annotations

import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.settings import Settings

__all__ = [
    "CONTEXT_FIELDS",
    "JsonFormatter",
    "configure_logging",
    "level_number",
    "logging_config",
]

# Attributes a log call may pass with ``extra=``; written when present and not None.
CONTEXT_FIELDS = ("run_id", "user_id", "event_id", "code", "topic", "partition", "offset")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# HTTP clients that log every request at INFO (the LLM judge's, through anthropic): only
# their warnings, unless the level is DEBUG.
_CHATTY = ("httpx", "httpcore")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line.

    >>> record = logging.LogRecord("x", logging.INFO, __file__, 1, "a\\nb %s", ("c",), None)
    >>> record.user_id = "u1"
    >>> doc = orjson.loads(JsonFormatter().format(record))
    >>> doc["message"], doc["user_id"], doc["level"], doc["ts"].endswith("Z")
    ('a\\nb c', 'u1', 'INFO', True)
    """

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC)
        doc: dict[str, Any] = {
            "ts": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                doc[name] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info:
            doc["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc_info"] = record.exc_text
        if record.stack_info:
            doc["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(doc, default=str).decode()


def level_number(name: str) -> int:
    """``INFO`` → 20; the names are :data:`streams.settings.LOG_LEVELS`."""
    level = logging.getLevelName(name.upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log level {name!r}")
    return level


def logging_config(settings: Settings, level: int | None = None) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` mapping: every record to stderr, formatted as
    ``TIPSTREAM_LOG_FORMAT`` says, from ``level`` (default ``TIPSTREAM_LOG_LEVEL``) up."""
    chosen = level_number(settings.log_level) if level is None else level
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"}
        if settings.log_format == "json"
        else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"tipstream": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "tipstream",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": chosen, "handlers": ["stderr"]},
        "loggers": {
            name: {"level": max(chosen, logging.WARNING) if chosen > logging.DEBUG else chosen}
            for name in _CHATTY
        },
    }


def configure_logging(settings: Settings, level: int | None = None) -> None:
    """Set up this process's logging from the settings (replacing any handlers).

    In ``json``, warnings (``warnings.warn``) become log records too, so that nothing but
    JSON reaches stderr from the logging side.
    """
    logging.config.dictConfig(logging_config(settings, level))
    logging.captureWarnings(settings.log_format == "json")
