"""Logs an operator can read: one record per event (a traceback included), text or JSON lines.

`LOG_FORMAT=text` (the default) writes `[time] [pid] [LEVEL] logger: message`; `LOG_FORMAT=json`
writes one JSON object per line (`time`, `level`, `logger`, `pid`, `message`, and `traceback`
when there is one). Either way e-mail addresses are masked in every line: administrators' addresses
travel in threshold events and SMTP errors, and have no place in logs. Learner ids are never
logged by this service's code at INFO or above (counts and tenant ids only).

Values in a message come from input (a tenant id, an SMTP server's answer) and may hold a line
break: in text logs control characters are written as escapes (`\\n`, `\\x1b`), so a message stays
on its record's one line and no value can forge a record of its own (JSON lines escape them
all too, U+2028 and the C1 controls included). A traceback follows its record on lines
indented by two spaces, so every line that starts with `[` begins a record.
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
# A local part: quoted ("john doe"), or atoms with apostrophes and the like (o'brien), not
# starting with a quote or a dot. A domain: dotted names, a dotless host name (localhost) or an
# address literal (no `[` inside, as RFC 5321 says). `/`, `=` and `:` stay out, so `key=value`
# and `topic/0@12` positions survive.
_ATOM = r"[\w+-][\w.+'!#$%&*^~-]*"
_DOMAIN = r"@(?:[\w-]+(?:\.[\w-]+)+|[^\W\d_][\w-]*|\[[^\[\]\s]*\])"
EMAIL = re.compile(rf"""(?:"[^"\r\n]*"|{_ATOM}){_DOMAIN}""")
# The same addresses, found in time linear in the text: an atom is tried only where its run of
# atom characters begins (or right after an address, glued to it), never again at each
# character of a run (which EMAIL does: a path of 10,000 letters and an `@` took a second).
# Every address a match holds is masked as EMAIL masks it.
_ADDRESSES = re.compile(
    rf"""(?:"[^"\r\n]*"|(?<![\w.+'!#$%&*^~-])[.'!#$%&*^~]*{_ATOM}){_DOMAIN}"""
    rf"(?:[.'!#$%&*^~]*{_ATOM}{_DOMAIN})*"
)
MASK = "<e-mail>"
# C0 and C1 controls, DEL and the Unicode line separators: what can break or fake a log line.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# ... those of them JSON lets through unescaped (it escapes U+0000-U+001F only): a line
# splitter that follows Unicode (`str.splitlines`) breaks a JSON line at U+2028 or U+0085, and
# a terminal may read U+009B as the start of an escape sequence.
RAW_IN_JSON = re.compile("[\x7f-\x9f\u2028\u2029]")
ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
TRACEBACK_INDENT = "  "


def redact(text: str) -> str:
    return _ADDRESSES.sub(_mask, text) if "@" in text else text


def _mask(match: re.Match[str]) -> str:
    return EMAIL.sub(MASK, match.group())


def escape_controls(text: str) -> str:
    """Every control character as a visible escape: `\\n`, `\\r`, `\\t`, `\\x1b`, `\\u2028`."""
    return CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return ESCAPES.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        # Masked before escaping: an escape next to an address must not be read as part of it.
        return escape_controls(redact(super().formatMessage(record)))

    def format(self, record: logging.LogRecord) -> str:
        line, _, details = super().format(record).partition("\n")
        if not details:
            return line
        # The traceback (or stack): its own lines, each indented and escaped.
        lines = (escape_controls(redact(text)) for text in details.split("\n"))
        return "\n".join([line, *(TRACEBACK_INDENT + text for text in lines)])


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
        # escaped as JSON escapes them: the same values, read back, on a line of their own
        return RAW_IN_JSON.sub(_json_escape, json.dumps(entry, ensure_ascii=False))


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


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
