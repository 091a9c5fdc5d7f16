"""What every command shares: its error type, argument types, the broker check."""

from __future__ import annotations

import argparse

from streams.config.settings import Settings
from streams.kafka.admin import (
    admin_client,
)


class CommandError(Exception):
    """A command could not do its job; the message is shown as a one-line error."""


def require_broker(settings: Settings, timeout_s: float) -> None:
    """Fail with a one-line error, within `timeout_s`, when no broker answers."""
    admin_client(settings, timeout_s=timeout_s).close()


def open_input(path: str):  # type: ignore[no-untyped-def]
    try:
        return open(path, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None


def parse_instant(text: str):  # type: ignore[no-untyped-def]
    from datetime import datetime

    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"--now: not an RFC 3339 timestamp: {text!r}") from None
    if value.tzinfo is None:
        raise CommandError(f"--now: needs an offset, e.g. {text}Z")
    return value


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected a number of at least {low}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value
