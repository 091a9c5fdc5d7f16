"""What every command shares: its error type, argument types, the broker check."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from kafka.errors import KafkaError
from pydantic import TypeAdapter, ValidationError

from schemas.common import Timestamp
from streams.config.settings import Settings
from streams.kafka.admin import (
    admin_client,
)


class CommandError(Exception):
    """A command could not do its job; the message is shown as a one-line error."""


def require_broker(settings: Settings, timeout_s: float) -> None:
    """Fail with a one-line error, within `timeout_s`, when no broker answers."""
    admin_client(settings, timeout_s=timeout_s).close()


def require_topics(settings: Settings, names: Iterable[str], timeout_s: float) -> None:
    """Fail with a one-line error when a topic is missing (not created yet, or TOPIC_PREFIX
    mistyped): the brokers create none on demand, so a client would wait a minute for it and
    then fail with a traceback, and a reader would see an empty topic."""
    admin = admin_client(settings, timeout_s=timeout_s)
    try:
        existing = set(admin.list_topics())
    except KafkaError as exc:
        raise CommandError(f"cannot list the topics ({type(exc).__name__}: {exc})") from None
    finally:
        admin.close()
    missing = [settings.topic(name) for name in names if settings.topic(name) not in existing]
    if missing:
        raise CommandError(
            f"no topic {', '.join(missing)} (TOPIC_PREFIX={settings.topic_prefix!r}): "
            "run `active-learners topics` first, or check TOPIC_PREFIX"
        )


def open_input(path: str, errors: str = "strict"):  # type: ignore[no-untyped-def]
    try:
        return open(path, encoding="utf-8", errors=errors)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None


_TIMESTAMP: TypeAdapter[Any] = TypeAdapter(Timestamp)
_WITHOUT_OFFSET = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
)


def shortened(text: str, limit: int = 40) -> str:
    """An argument as an error shows it: at most `limit` characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_timestamp(text: str, option: str, expected: str) -> Any:
    """A timestamp option read as the worker reads one (the contract's `Timestamp`: RFC 3339
    forms, a leap second, `t` and `z`, the years 1900-2499), not as `fromisoformat` does (it
    refused those, and took forms the contract refuses: helper-83, helper-85). ValueError with
    a one-line message naming `option`."""
    shown = shortened(text)
    try:
        return _TIMESTAMP.validate_python(text)
    except ValidationError as exc:
        if _WITHOUT_OFFSET.fullmatch(text):
            raise ValueError(f"{option}: a timestamp needs an offset, e.g. {text}Z") from None
        said = exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
        if "RFC 3339" in said:
            said = expected
        raise ValueError(f"{option}: {said}; got {shown!r}") from None


def parse_instant(text: str):  # type: ignore[no-untyped-def]
    if not re.search(r"[0-9][Tt ][0-9]", text):  # a date alone
        raise CommandError("--now: needs a time and an offset, e.g. 2026-01-01T00:00:00Z")
    try:
        return read_timestamp(text, "--now", "not an RFC 3339 timestamp")
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _int_at_least(text: str, low: int, high: int | None = None) -> int:
    try:  # ASCII digits only: `int` also reads `١٢`, `1_000` and `+12` (helper-84)
        if not (text.isascii() and text.strip().lstrip("-").isdigit()):
            raise ValueError(text)
        value = int(text)
    except ValueError:
        # (a number of more than 4,300 digits too: Python refuses to read it)
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text[:40]!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected a number of at least {low}, got {value}")
    if high is not None and value > high:
        raise argparse.ArgumentTypeError(f"expected a number of at most {high:,}, got {value:,}")
    return value


def positive_int_up_to(high: int) -> Callable[[str], int]:
    """An argparse type: a positive whole number of at most `high`."""
    return lambda text: _int_at_least(text, 1, high)


def positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


# Seconds an option may give (about 31 years): a finite 1e308 is still infinite in the
# milliseconds the Kafka clients count (int(1e308 * 1000) raises OverflowError).
MAX_SECONDS = 1e9


# a decimal number in ASCII (`float` also reads `١٢`, `1_000` and `+12`: helper-85); `nan` and
# `inf` pass here to be refused below by name
_DECIMAL = re.compile(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|-?(nan|inf|infinity)", re.I)


def positive_float(text: str) -> float:
    try:
        if not (text.isascii() and _DECIMAL.fullmatch(text.strip())):
            raise ValueError(text)
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):  # nan passes every comparison; inf overflows any deadline
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"expected a number of at most {MAX_SECONDS:,.0f}, got {text!r}"
        )
    return value


def first_error(exc: Any) -> str:
    """The first problem of a pydantic ValidationError, on one line: `field: message`."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    message = " ".join(str(error["msg"]).split()).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
