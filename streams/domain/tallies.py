"""What the forecast and the advisor read, kept up to date as attempts arrive (pure: no I/O).

Scanning a tenant's attempts for every forecast takes seconds at a million attempts. Instead a
learner partition keeps, per tenant, small tallies in memory beside its counts
(streams/domain/learners.py: PartitionCounters), derived from its memberships and attempts:

- each learner's membership stores, per window, a *summary* `[first, last]` (epoch seconds): its
  first attempt in the window, exactly, and an attempt of the local calendar month of its last
  one (rewritten only when a launch falls in a later month, so a learner active every day costs
  a write a month, not a write a launch);
- a `WindowTally` per window counts learners by the local day of their first attempt (the
  forecast's daily growth: a learner joins the count on its first day) and by the local month
  of their `last` (the advisor: an `older_than` cut-off at a local month start leaves the
  learners whose last attempt is in its month or later);
- `months` counts the tenant's attempts by local calendar month (the advisor's attempts removed
  by a cut-off: every attempt before it).

Days and months are those of the tenant's time zone in the partition's cut: a license that moves
the zone re-cuts the tenant, and the re-cut replaces its tallies. Tallies are derived like the
counts: changed only once a change is durable, rebuilt from the memberships and attempts at a
takeover, replaced at a re-cut; a window is tallied only if it ends after the partition's
takeover (the forecast and the advisor read the current window), so memory stays at most a few
hundred entries per tenant and partition, however many learners.
"""

from __future__ import annotations

import time
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from streams.domain.reports import launched_at
from streams.domain.windows import local_midnight

Summary = list[float]  # [first, last] of a learner in one window (see the module's docstring)
# a learner's windows (start dates) with their summaries; None: stored by an older version
Membership = dict[str, Summary | None]


def read_membership(stored: Any) -> Membership:
    """A stored membership read: {start: [first, last]}, or the forms of older versions (a list
    of starts; {start: attempts}), whose windows have no summary."""
    if not stored:
        return {}
    if isinstance(stored, list):
        return dict.fromkeys(stored)
    for value in stored.values():
        if type(value) is not list:
            break
    else:
        return dict(stored)  # the current form (a copy: the caller changes it)
    membership: Membership = {}
    for window, value in stored.items():
        if isinstance(value, list):
            membership[window] = [float(value[0]), float(value[1])]
        elif value is None or value > 0:
            membership[window] = None
    return membership


def stored_membership(membership: Membership) -> dict[str, Summary | None]:
    return {window: membership[window] for window in sorted(membership)}


# -- local calendar months ------------------------------------------------------------------------


class MonthOf:
    """The local calendar month ("YYYY-MM") of instants in one time zone.

    It keeps the starts of a run of consecutive months (found once each: a zone look-up is
    slow) and finds an instant's month by bisection, widening the run when an instant falls
    outside it."""

    def __init__(self, timezone: str) -> None:
        self.timezone = timezone
        self.first = (0, 0)  # (year, month) of bounds[0]
        self.bounds: list[float] = []  # the starts of consecutive months, and the end of the last
        self.labels: list[str] = []

    def __call__(self, instant: float) -> str:
        bounds = self.bounds
        if not bounds or not bounds[0] <= instant < bounds[-1]:
            self._cover(instant)
            bounds = self.bounds
        return self.labels[bisect_right(bounds, instant) - 1]

    def start_of(self, instant: float) -> float:
        """The start of the local month holding `instant`."""
        self(instant)
        return self.bounds[bisect_right(self.bounds, instant) - 1]

    def end_of(self, instant: float) -> float:
        """The start of the local month after the one holding `instant`."""
        self(instant)
        return self.bounds[bisect_right(self.bounds, instant)]

    def is_month_start(self, instant: float) -> bool:
        return self.start_of(instant) == instant

    def _cover(self, instant: float) -> None:
        """Widen the run of months to hold `instant` (its UTC month and one either side)."""
        year, month = _utc_month(instant)
        low, high = _step(year, month, -1), _step(year, month, 2)  # high: the end bound
        if self.bounds:
            wider = min(low, self.first), max(high, _step(*self.first, len(self.labels)))
            if _months_between(*wider) <= MAX_RUN:  # else start again around this instant
                low, high = wider
        months = []
        current = low
        while current <= high:
            months.append(current)
            current = _step(*current, 1)
        self.first = low
        self.bounds = [_month_start(self.timezone, y, m) for y, m in months]
        self.labels = [f"{y:04d}-{m:02d}" for y, m in months[:-1]]


class DayOf:
    """The local date (as an ordinal) of instants in one time zone, by bisection over a run of
    consecutive local midnights, like `MonthOf`."""

    def __init__(self, timezone: str) -> None:
        self.timezone = timezone
        self.first = 0  # the ordinal of the day starting at bounds[0]
        self.bounds: list[float] = []  # consecutive local midnights

    def __call__(self, instant: float) -> int:
        bounds = self.bounds
        if not bounds or not bounds[0] <= instant < bounds[-1]:
            self._cover(instant)
            bounds = self.bounds
        return self.first + bisect_right(bounds, instant) - 1

    def _cover(self, instant: float) -> None:
        ordinal = _utc_ordinal(instant)
        low, high = ordinal - 32, ordinal + 33  # a month either side: few widenings
        if self.bounds:
            last = self.first + len(self.bounds) - 1
            if max(high, last) - min(low, self.first) <= MAX_RUN * 31:
                low, high = min(low, self.first), max(high, last)
        self.first = low
        self.bounds = [_day_start(self.timezone, day) for day in range(low, high + 1)]


_DAY_STARTS: dict[tuple[str, int], float] = {}
_DAYS: dict[str, DayOf] = {}
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_LAST_ORDINAL = date.max.toordinal()


def days_in(timezone: str) -> DayOf:
    found = _DAYS.get(timezone)
    if found is None:
        found = _DAYS[timezone] = DayOf(timezone)
    return found


def _utc_ordinal(instant: float) -> int:
    return min(max(int(instant // 86_400) + _EPOCH_ORDINAL, 3), _LAST_ORDINAL - 3)


def _day_start(timezone: str, ordinal: int) -> float:
    key = (timezone, ordinal)
    found = _DAY_STARTS.get(key)
    if found is None:
        if not 1 <= ordinal <= _LAST_ORDINAL:
            return float("-inf") if ordinal < 1 else float("inf")
        midnight = local_midnight(date.fromordinal(ordinal), timezone).timestamp()
        found = _DAY_STARTS[key] = midnight
    return found


_LAUNCHED_AT = b'"launched_at":"'

MAX_RUN = 1_200  # months one MonthOf keeps (a hundred years; launches far apart start anew)


def _months_between(low: tuple[int, int], high: tuple[int, int]) -> int:
    return (high[0] - low[0]) * 12 + high[1] - low[1]


_MONTH_STARTS: dict[tuple[str, int, int], float] = {}
_MONTHS: dict[str, MonthOf] = {}


def month_of_record(raw: bytes, month_of: MonthOf) -> str:
    """The local month of a stored attempt record's `launched_at` (a takeover reads every one).

    A launch's offset is within +-23:59 and a zone's within -12:00 and +14:00: they differ by
    less than two days, so a launch written on the 3rd to the 26th of a month is in that month
    in every zone, as its own text says (no instant needed: most records are read this way)."""
    found = raw.find(_LAUNCHED_AT)
    if found >= 0:
        # a valid launch's text with '-' at 4 and 7 starts YYYY-MM-DD (the model checked it)
        text = raw[found + len(_LAUNCHED_AT) : found + len(_LAUNCHED_AT) + 10]
        if len(text) == 10 and text[4] == text[7] == 45 and b"03" <= text[8:] <= b"26":
            return text[:7].decode()
    return month_of(launched_at(raw))


def months_in(timezone: str) -> MonthOf:
    found = _MONTHS.get(timezone)
    if found is None:
        found = _MONTHS[timezone] = MonthOf(timezone)
    return found


def _month_start(timezone: str, year: int, month: int) -> float:
    key = (timezone, year, month)
    found = _MONTH_STARTS.get(key)
    if found is None:
        if not 1 <= year <= 9999:  # the ends of the calendar: an instant there has no window
            return float("-inf") if year < 1 else float("inf")
        found = _MONTH_STARTS[key] = local_midnight(date(year, month, 1), timezone).timestamp()
    return found


def _utc_month(instant: float) -> tuple[int, int]:
    try:
        moment = time.gmtime(instant)
    except (OverflowError, OSError, ValueError):
        return (0, 1) if instant < 0 else (10000, 1)
    return moment.tm_year, moment.tm_mon


def _step(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + month - 1 + months
    return index // 12, index % 12 + 1


# -- the tallies ----------------------------------------------------------------------------------


@dataclass
class WindowTally:
    """Learners of one window by the local day of their first attempt in it and by the local
    month of their `last`."""

    start: float  # the window's bounds, epoch seconds
    end: float
    first_day: int = 0  # the ordinal of the window's first local day
    # learners by the day of their first attempt, from `first_day` on: an array of C ints, a few
    # hundred per window whatever the learners (thousands of tenants keep one each)
    firsts: array[int] = field(default_factory=lambda: array("i"))
    lasts: dict[str, int] = field(default_factory=dict)  # learners by the month of their last
    exact: bool = True  # False: a member's summary is unknown (stored by an older version)

    def firsts_by_day(self) -> dict[int, int]:
        return {self.first_day + index: n for index, n in enumerate(self.firsts) if n}


def _bump(counter: Counter[Any], key: Any, by: int) -> None:
    value = counter.get(key, 0) + by
    if value:
        counter[key] = value
    else:
        del counter[key]


# a summary leaving (-1) or joining (+1) a window's tally: (window, first's day, last's month,
# sign); (window, None, None, 1) for a member whose summary is unknown
TallyEntry = tuple[str, int | None, str | None, int]
# a window's bounds (epoch seconds), the ordinal of its first local day, its number of days
WindowDays = tuple[float, float, int, int]


@dataclass
class TallyChange:
    """How a batch changes a tenant's tallies in one partition (applied once durable)."""

    windows: dict[str, WindowDays] = field(default_factory=dict)
    summaries: list[TallyEntry] = field(default_factory=list)
    months: Counter[str] = field(default_factory=Counter)  # attempts added (+) or removed (-)

    def replace(
        self,
        window: str,
        span: tuple[float, float],
        old: Summary | None,
        new: Summary | None,
        timezone: str,
    ) -> None:
        """A learner's summary of `window` changes from `old` to `new` (None: not a member)."""
        day_of, month_of = days_in(timezone), months_in(timezone)
        if window not in self.windows:
            self._bounds(window, span, day_of)
        if old is not None:
            self.summaries.append((window, day_of(old[0]), month_of(old[1]), -1))
        if new is not None:
            self.summaries.append((window, day_of(new[0]), month_of(new[1]), 1))

    def unknown(self, window: str, span: tuple[float, float], timezone: str) -> None:
        """A member of `window` whose summary is not known: the window's tally is not exact."""
        if window not in self.windows:
            self._bounds(window, span, days_in(timezone))
        self.summaries.append((window, None, None, 1))

    def _bounds(self, window: str, span: tuple[float, float], day_of: DayOf) -> None:
        first_day = day_of(span[0])
        self.windows[window] = (span[0], span[1], first_day, day_of(span[1]) - first_day)

    def __bool__(self) -> bool:
        return bool(self.summaries) or any(self.months.values())


@dataclass
class Tallies:
    """A tenant's tallies in one partition: windows ending after `tracked_from`, and months."""

    tracked_from: float = 0.0
    windows: dict[str, WindowTally] = field(default_factory=dict)
    months: Counter[str] = field(default_factory=Counter)

    def apply(self, change: TallyChange) -> None:
        # runs for every batch, with an entry for most launches: the loop is kept flat
        windows, tracked_from, bounds = self.windows, self.tracked_from, change.windows
        for window, day, month, sign in change.summaries:
            tally = windows.get(window)
            if tally is None:
                start, end, first_day, days = bounds[window]
                if end <= tracked_from:
                    continue  # ended before the takeover: not tallied
                tally = WindowTally(start, end, first_day, array("i", bytes(4 * days)))
                windows[window] = tally
            if day is None or month is None:
                tally.exact = False
                continue
            tally.firsts[day - tally.first_day] += sign
            lasts = tally.lasts
            n = lasts.get(month, 0) + sign
            if n:
                lasts[month] = n
            else:
                del lasts[month]
        for month, n in change.months.items():
            if n:
                _bump(self.months, month, n)

    def tallied(self, span: tuple[float, float]) -> WindowTally | None:
        """The exact tally of the window with these bounds; None when there is none to trust
        (not tallied here, or not exact)."""
        for tally in self.windows.values():
            if (tally.start, tally.end) == span:
                return tally if tally.exact else None
        if span[1] > self.tracked_from:  # tallied from the takeover on, and no member yet
            return WindowTally(*span)
        return None


# -- what the forecast and the advisor read -------------------------------------------------------


def daily_firsts(tally: WindowTally, days: Sequence[date]) -> list[int]:
    """Learners per local day of the window (`days`) of their first attempt in it."""
    per_day = [0] * len(days)
    offset = tally.first_day - days[0].toordinal()
    for index, n in enumerate(tally.firsts):
        if n:
            per_day[offset + index] += n
    return per_day


def advisor_counts(
    tally: WindowTally, months: Counter[str], timezone: str, cutoffs: Sequence[float]
) -> tuple[list[int], list[int]] | None:
    """For each cut-off (a local month start): the learners whose last attempt in the window is
    at or after it, and the tenant's attempts before it; None when a cut-off is not a local
    month start (then only a scan can tell)."""
    month_of = MonthOf(timezone)
    if not all(month_of.is_month_start(cutoff) for cutoff in cutoffs):
        return None
    active_after, removed = [], []
    for cutoff in cutoffs:
        label = month_of(cutoff)
        active_after.append(sum(n for month, n in tally.lasts.items() if month >= label))
        removed.append(sum(n for month, n in months.items() if month < label))
    return active_after, removed


def summaries_of(instants: Iterable[tuple[str, float]]) -> dict[str, Summary]:
    """Exact summaries (first and last instant per window) from (window, instant) pairs."""
    found: dict[str, Summary] = {}
    for window, instant in instants:
        summary = found.get(window)
        if summary is None:
            found[window] = [instant, instant]
        elif instant < summary[0]:
            summary[0] = instant
        elif instant > summary[1]:
            summary[1] = instant
    return found
