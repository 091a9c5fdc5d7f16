"""Active Windows: calendar-month windows anchored at a tenant's cycle start, in its time zone.

Window k of a cut (anchor d, m months, zone tz) is [start(k), start(k+1)) where start(k) is local
midnight in tz of add_months(d, k*m). add_months clamps the day to the target month and is always
computed from the anchor, never chained:

    d = Jan 31, m = 1:  Jan 31, Feb 28 (29), Mar 31, Apr 30, ...   (not Jan 31, Feb 28, Mar 28)

Every instant lies in exactly one window; k may be negative (instants before the anchor).
"""

from __future__ import annotations

import calendar
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import cached_property, lru_cache
from zoneinfo import ZoneInfo


@dataclass(frozen=True, order=True)
class Cut:
    """How a license cuts time into windows; licenses with the same cut have the same windows."""

    anchor: date
    months: int
    timezone: str

    def __post_init__(self) -> None:
        if self.months not in (1, 3, 12):
            raise ValueError(f"window months must be 1, 3 or 12, got {self.months}")

    @cached_property
    def id(self) -> str:
        """A stable text id, e.g. `2026-01-31/1/Europe/Berlin` (kept: the tenant stage asks for
        it at every publication of every tenant). Interned: every (partition, tenant) counter
        keeps its cut's id, from a Cut of its own (a license's), the same few texts."""
        return sys.intern(f"{self.anchor.isoformat()}/{self.months}/{self.timezone}")

    @classmethod
    def from_id(cls, text: str) -> Cut:
        anchor, months, timezone = text.split("/", 2)
        return cls(date.fromisoformat(anchor), int(months), timezone)


DEFAULT_CUT = Cut(date(1970, 1, 1), 12, "UTC")


@dataclass(frozen=True)
class Window:
    """Window `index` of a cut: [start_at, end_at), named by its local start date."""

    index: int
    start: date
    end: date
    start_at: datetime
    end_at: datetime
    months: int

    def contains(self, instant: datetime) -> bool:
        return self.start_at <= instant < self.end_at


def add_months(day: date, months: int) -> date:
    """`day` moved by `months` calendar months, the day clamped to the target month's length."""
    month_index = day.year * 12 + (day.month - 1) + months
    year, month0 = divmod(month_index, 12)
    last_day = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(day.day, last_day))


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_midnight(day: date, timezone: str) -> datetime:
    """The first instant of `day` in `timezone`, as an aware UTC datetime.

    Where midnight does not exist (a DST gap at 00:00), zoneinfo's fold=0 reading maps it to the
    first instant after the gap, which is the start of that local day.
    """
    local = datetime.combine(day, time(0), tzinfo=_zone(timezone))
    # datetime's own UTC, not ZoneInfo("UTC"): a launch read from "...Z" or "+00:00" carries
    # it, and two datetimes with the same tzinfo compare without asking either for its offset
    # (10x faster; the learner stage compares every launch with its window's bounds)
    return local.astimezone(UTC)


def start_date(cut: Cut, index: int) -> date:
    return add_months(cut.anchor, index * cut.months)


@lru_cache(maxsize=65_536)
def window_at_index(cut: Cut, index: int) -> Window:
    start = start_date(cut, index)
    end = start_date(cut, index + 1)
    return Window(
        index=index,
        start=start,
        end=end,
        start_at=local_midnight(start, cut.timezone),
        end_at=local_midnight(end, cut.timezone),
        months=cut.months,
    )


def window_of(cut: Cut, instant: datetime) -> Window:
    """The window of `cut` that contains the aware `instant`."""
    if instant.tzinfo is None:
        raise ValueError("instant must be timezone-aware")
    local = instant.astimezone(_zone(cut.timezone))
    months_since_anchor = (local.year - cut.anchor.year) * 12 + (local.month - cut.anchor.month)
    index = months_since_anchor // cut.months  # a guess, off by at most one; fixed below
    window = window_at_index(cut, index)
    while instant < window.start_at:
        window = window_at_index(cut, window.index - 1)
    while instant >= window.end_at:
        window = window_at_index(cut, window.index + 1)
    return window


@lru_cache(maxsize=65_536)
def window_starting(cut: Cut, start: date) -> Window | None:
    """The window of `cut` whose local start date is `start`, or None if no window starts then."""
    window = window_of(cut, local_midnight(start, cut.timezone))
    return window if window.start == start else None
