"""Types shared by every topic: ids, timestamps, the base models."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

MAX_ID_LENGTH = 256


class InputModel(BaseModel):
    """An input record: frozen, unknown extra fields ignored (producers may add their own)."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=False)


class OutputModel(BaseModel):
    """A record the service writes: frozen, and nothing but the contract's fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})")
# Instants the service accepts (`launched_at`, `requested_at`, `older_than`). Outside, window
# arithmetic would leave the range of Python's dates; and a learner's record of windows (one entry
# per window it launched in) must fit one Kafka record: 600 years are at most 7,201 monthly
# windows, under 400 kB. With 9000 as the end, far-future Kafka timestamps let a learner collect
# 23,400 monthly windows (1 MiB), and from then on every command carrying one of its launches was
# given up whole.
EARLIEST_YEAR, LATEST_YEAR = 1900, 2500
# Calendar dates (a license's `cycle_start`) keep the end they had: how many windows a learner has
# depends on when it launched, not on where the windows are anchored, and a license an older
# version stored stays valid wherever it is read again (the worker, the read model, the notifier).
LATEST_DATE_YEAR = 9000


def _require_text(value: Any) -> Any:
    # RFC 3339 text only: pydantic would otherwise read a number, or a string of digits, as a
    # Unix timestamp, and a producer sending epoch seconds must hear that it is wrong.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        if isinstance(value, str) and _RFC3339.fullmatch(value + "Z"):
            raise ValueError("has no timezone offset (RFC 3339 needs one, e.g. ...T10:00:00Z)")
        raise ValueError("must be an RFC 3339 timestamp string with an offset")
    leap = _SECOND_60.fullmatch(value)
    return value if leap is None else _leap_second(leap)


# RFC 3339 (5.6, 5.7) writes a leap second as second 60: 23:59:60Z, or 15:59:60-08:00. Offset
# minutes 00-59 only, as pydantic reads every other instant: `fromisoformat` below takes +00:60
# as +01:00 (helper-81).
_SECOND_60 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}):60(?:\.\d+)?(?:([Zz])|([+-]\d{2}:?[0-5]\d))"
)


def _leap_second(match: re.Match[str]) -> datetime:
    """A leap second as the last microsecond before it (a datetime has no second 60): in the
    same minute, day and window as the second it follows."""
    day, minute, utc, offset = match.groups()
    try:
        instant = datetime.fromisoformat(f"{day}T{minute}:59.999999{'+00:00' if utc else offset}")
        in_utc = instant.astimezone(UTC)
        last_of_month = (in_utc + timedelta(days=1)).day == 1
    except (ValueError, OverflowError):
        raise ValueError("must be an RFC 3339 timestamp string with an offset") from None
    if (in_utc.hour, in_utc.minute) != (23, 59) or not last_of_month:
        raise ValueError("has second 60, a leap second only at 23:59:60 UTC at a month's end")
    return instant


def _in_range(value: datetime) -> datetime:
    try:
        year = value.astimezone(UTC).year if value.tzinfo else value.year
    except OverflowError:  # 0001-01-01T00:00+14:00 is before the year 1 in UTC
        year = 0
    if not EARLIEST_YEAR <= year < LATEST_YEAR:
        raise ValueError(f"must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}")
    return value


def _date_in_range(value: date) -> date:
    if not EARLIEST_YEAR <= value.year < LATEST_DATE_YEAR:
        raise ValueError(f"must be between the years {EARLIEST_YEAR} and {LATEST_DATE_YEAR}")
    return value


def _require_date_text(value: Any) -> Any:
    if not isinstance(value, str | date):
        raise ValueError("must be a date string YYYY-MM-DD")
    if isinstance(value, str) and (len(value) != 10 or value[4] != "-" or value[7] != "-"):
        raise ValueError("must be a date string YYYY-MM-DD")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_require_text), AfterValidator(_in_range)]
"""An instant with an explicit UTC offset, e.g. `2026-03-01T10:00:00Z`. Naive times are refused."""

CalendarDate = Annotated[date, BeforeValidator(_require_date_text), AfterValidator(_date_in_range)]
"""A calendar date `YYYY-MM-DD`."""

EntityId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"^[^/\x00-\x1f\x7f]+$"),
    Field(
        description="1 to 256 characters, no '/' and no control character (U+0000-U+001F, "
        "U+007F); any other string is a valid id"
    ),
]
"""A tenant, learner, element or attempt id."""

RequestId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LENGTH),
    Field(description="1 to 256 characters"),
]
"""An event or request id chosen by the producer."""


def _check_email(value: str) -> str:
    # a domain without a dot (`ops@intranet`) is an address too (RFC 5321): an intranet's mail
    # server delivers it, and the contract asks only for one address per entry
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or " " in value or domain.startswith("."):
        raise ValueError(f"not an e-mail address: {value[:80]!r}")
    return value


EmailAddress = Annotated[
    str, StringConstraints(min_length=3, max_length=320), AfterValidator(_check_email)
]


class WindowRef(OutputModel):
    """An Active Window: [start, end) in the tenant's time zone, named by its local start date."""

    start: date = Field(description="local start date of the window (inclusive)")
    end: date = Field(description="local start date of the next window (exclusive)")
    months: int = Field(description="window length in calendar months: 1, 3 or 12")
