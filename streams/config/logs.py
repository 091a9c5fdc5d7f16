"""Logs an operator can read: one record per event (a traceback included), text or JSON lines.

`LOG_FORMAT=text` (the default) writes `[time] [pid] [LEVEL] logger: message`; `LOG_FORMAT=json`
writes one JSON object per line (`time`, `level`, `logger`, `pid`, `message`, and `traceback`
when there is one). Either way e-mail addresses are masked in every line: administrators' addresses
travel in threshold events and SMTP errors, and have no place in logs. Learner ids are never
logged by this service's code at INFO or above (counts and tenant ids only).
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import re
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "warn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
    "crit": "CRITICAL",
    "critical": "CRITICAL",
}
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
MASK = "<e-mail>"


def redact(text: str) -> str:
    return EMAIL.sub(MASK, text) if "@" in text else text


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": redact(record.getMessage().strip()),
        }
        if record.exc_info:
            entry["traceback"] = redact(self.formatException(record.exc_info))
        elif record.stack_info:
            entry["traceback"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False)


def log_format(env: dict[str, str] | os._Environ[str] = os.environ) -> str:
    fmt = env.get("LOG_FORMAT", "").strip().lower() or "text"
    if fmt not in FORMATS:
        from streams.config.settings import ConfigError

        raise ConfigError(f"LOG_FORMAT must be text or json, got {fmt!r}")
    return fmt


def logging_config(fmt: str, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the worker (faust's) and the notifier alike."""
    level = LEVELS.get(level.lower(), "INFO")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "text": {"()": "streams.config.logs.TextFormatter"},
            "json": {"()": "streams.config.logs.JsonFormatter"},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": fmt,
            }
        },
        "root": {"level": level, "handlers": ["default"]},
    }


def configure(fmt: str, level: str = "info") -> None:
    logging.config.dictConfig(logging_config(fmt, level))
