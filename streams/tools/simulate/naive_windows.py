"""The Active Window rule as CONTRACT.md words it, for the oracle: deliberately naive, and
written apart from streams/domain/windows.py so that a wrong window there shows as a wrong count.

The contract: for a license (d = `cycle_start`, m = `window_months`, tz), window k is
[start(k), start(k+1)) with start(k) = local midnight in tz of add_months(d, k*m); add_months
clamps the day to the target month's length and is always computed from d, never chained; every
instant is in exactly one window; k may be negative; a window is named by its local start date.

So, with none of windows.py's arithmetic:
  - add_months walks the calendar one month at a time from d (forwards or backwards) and clamps
    d's day to the length of the month it lands in (the days from its first to the next month's);
  - local midnight of a day is the first instant whose wall clock in tz reads that day 00:00 (a
    midnight that occurs twice starts the day at its first); where the clocks skip midnight (a
    DST gap), the first instant of that local date, found by walking UTC time forwards;
  - the window holding an instant is found by stepping k from 0 until start(k) <= instant <
    start(k+1), comparing instants, nothing else.

A cut here is a plain (cycle start, window months, zone) value; `DEFAULT` is the contract's
license of a tenant without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo


class CutLike(Protocol):
    """A license's cycle start, window months and zone (the stages' `Cut` is one)."""

    @property
    def anchor(self) -> date: ...
    @property
    def months(self) -> int: ...
    @property
    def timezone(self) -> str: ...


@dataclass(frozen=True)
class NaiveWindow:
    index: int
    start: date
    end: date
    start_at: datetime
    end_at: datetime
    months: int


DEFAULT = (date(1970, 1, 1), 12, "UTC")  # CONTRACT.md: a tenant without a license


def _month_length(year: int, month: int) -> int:
    first = date(year, month, 1)
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return (following - first).days


def add_months(day: date, months: int) -> date:
    """`day` moved `months` calendar months, one month at a time, its day clamped."""
    year, month = day.year, day.month
    step = 1 if months >= 0 else -1
    for _ in range(abs(months)):
        month += step
        if month == 13:
            year, month = year + 1, 1
        elif month == 0:
            year, month = year - 1, 12
    return date(year, month, min(day.day, _month_length(year, month)))


def _reads_midnight(local: datetime, day: date) -> bool:
    return local.date() == day and (local.hour, local.minute, local.second) == (0, 0, 0)


@lru_cache(maxsize=4096)
def local_midnight(day: date, zone: str) -> datetime:
    """The first instant whose wall clock in `zone` reads `day` 00:00:00; where the clocks skip
    that midnight (a DST gap), the first instant whose local date is `day`.

    No local time is ever resolved to an instant: each offset the zone uses within two days
    gives a candidate (midnight minus the offset), read back in the zone and kept if it reads
    midnight; the earliest kept one wins (a midnight that occurs twice starts at its first).
    """
    tz = ZoneInfo(zone)
    as_utc = datetime(day.year, day.month, day.day, tzinfo=UTC)  # the wall clock's figures
    offsets = set()
    for hours in range(-48, 49):
        offset = (as_utc + timedelta(hours=hours)).astimezone(tz).utcoffset()
        assert offset is not None
        offsets.add(offset)
    readings = [
        as_utc - offset
        for offset in offsets
        if _reads_midnight((as_utc - offset).astimezone(tz), day)
    ]
    if readings:
        return min(readings)

    # in a gap: walk UTC time forwards in hours, minutes, seconds to the first instant of the
    # day (every zone's offset is within +-15 h of UTC, so the walk starts before the day does)
    def reached(instant: datetime) -> bool:
        return instant.astimezone(tz).date() >= day

    instant = as_utc - timedelta(hours=16)
    assert not reached(instant)
    for step in (timedelta(hours=1), timedelta(minutes=1), timedelta(seconds=1)):
        while not reached(instant + step):
            instant += step
    return instant + timedelta(seconds=1)


@lru_cache(maxsize=65_536)
def window_at(anchor: date, months: int, zone: str, index: int) -> NaiveWindow:
    start = add_months(anchor, index * months)
    end = add_months(anchor, (index + 1) * months)
    return NaiveWindow(
        index, start, end, local_midnight(start, zone), local_midnight(end, zone), months
    )


@lru_cache(maxsize=262_144)
def _window_of(anchor: date, months: int, zone: str, instant: datetime) -> NaiveWindow:
    index = 0
    while instant < window_at(anchor, months, zone, index).start_at:
        index -= 1
    while instant >= window_at(anchor, months, zone, index).end_at:
        index += 1
    return window_at(anchor, months, zone, index)


def window_of(cut: CutLike, instant: datetime) -> NaiveWindow:
    """The window of `cut` holding the aware `instant`."""
    return _window_of(cut.anchor, cut.months, cut.timezone, instant)


def window_starting(cut: CutLike, start: date) -> NaiveWindow | None:
    """The window of `cut` named `start`, or None when none of its windows starts that day."""
    window = window_of(cut, local_midnight(start, cut.timezone))
    return window if window.start == start else None
