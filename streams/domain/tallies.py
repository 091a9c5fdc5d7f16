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

import sys
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from math import isfinite
from typing import Any, Protocol

from streams.domain.reports import LAUNCHED_AT, launched_at
from streams.domain.windows import Cut, local_midnight, window_of

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


# -- local days and months ----------------------------------------------------------------------


class _LocalRun:
    """Consecutive local periods (days or months) of one time zone: their starts, found once
    each (a zone look-up is slow), and the period of an instant by bisection, the run widened
    when an instant falls outside it. Periods are numbered: day ordinals, or months as
    `year * 12 + month - 1`."""

    MARGIN = 1  # periods either side of an instant's UTC period when the run is widened
    MAX_PERIODS = 1_200  # a wider run starts again around the new instant instead

    def __init__(self, timezone: str) -> None:
        self.timezone = timezone
        self.first = 0  # the number of the period starting at bounds[0]
        self.bounds: list[float] = []  # the periods' starts, and the end of the last

    def period(self, instant: float) -> int:
        bounds = self.bounds
        if not bounds or not bounds[0] <= instant < bounds[-1]:
            self._cover(instant)
            bounds = self.bounds
        return self.first + bisect_right(bounds, instant) - 1

    def start(self, period: int) -> float:
        """The first instant of a period (one the run holds)."""
        return self.bounds[period - self.first]

    def _cover(self, instant: float) -> None:
        around = self._utc_period(instant)
        low, high = around - self.MARGIN, around + self.MARGIN + 1  # high: the end bound
        if self.bounds:
            last = self.first + len(self.bounds) - 1
            if max(high, last) - min(low, self.first) <= self.MAX_PERIODS:
                low, high = min(low, self.first), max(high, last)
        self.first = low
        self.bounds = [self._period_start(period) for period in range(low, high + 1)]

    def _utc_period(self, instant: float) -> int:
        raise NotImplementedError

    def _period_start(self, period: int) -> float:
        raise NotImplementedError


class MonthOf(_LocalRun):
    """The local calendar month ("YYYY-MM") of instants in one time zone."""

    def __call__(self, instant: float) -> str:
        return _month_label(self.period(instant))

    def count(self, instants: Sequence[float]) -> Counter[str]:
        """How many of `instants` fall in each month: `Counter(map(self, instants))`, found by
        sorting them and bisecting once per month (a deletion counts a million instants). An
        instant the bisection cannot place (NaN, an infinity, one past the calendar's ends) is
        asked on its own."""
        # (NaN compares with nothing: sorted with it, a list is not in order)
        ordered = sorted(instant for instant in instants if isfinite(instant))
        counts: Counter[str] = empty_counter()
        at, size = 0, len(ordered)
        while at < size:
            period = self.period(ordered[at])
            following = period + 1 - self.first  # where the next month starts in the run
            end = at + 1
            if 0 <= following < len(self.bounds):
                end = max(bisect_left(ordered, self.bounds[following], at), end)
            counts[_month_label(period)] += end - at
            at = end
        for instant in instants:
            if not isfinite(instant):
                counts[self(instant)] += 1
        return counts

    def end_of(self, instant: float) -> float:
        """The start of the local month after the one holding `instant`."""
        return self.start(self.period(instant) + 1)

    def is_month_start(self, instant: float) -> bool:
        return self.start(self.period(instant)) == instant

    def _utc_period(self, instant: float) -> int:
        try:
            moment = time.gmtime(instant)
        except (OverflowError, OSError, ValueError):
            return 0 if instant < 0 else 10_000 * 12
        return moment.tm_year * 12 + moment.tm_mon - 1

    def _period_start(self, period: int) -> float:
        key = (self.timezone, period)
        found = _MONTH_STARTS.get(key)
        if found is None:
            year, month0 = divmod(period, 12)
            if not 1 <= year <= 9999:  # the ends of the calendar: an instant there has no window
                return float("-inf") if year < 1 else float("inf")
            midnight = local_midnight(date(year, month0 + 1, 1), self.timezone).timestamp()
            found = _MONTH_STARTS[key] = midnight
        return found


class DayOf(_LocalRun):
    """The local date (as an ordinal) of instants in one time zone."""

    MARGIN = 32  # a month either side: few widenings
    MAX_PERIODS = 1_200 * 31

    __call__ = _LocalRun.period

    def _utc_period(self, instant: float) -> int:
        return min(max(int(instant // 86_400) + _EPOCH_ORDINAL, 1), _LAST_ORDINAL)

    def _period_start(self, period: int) -> float:
        key = (self.timezone, period)
        found = _DAY_STARTS.get(key)
        if found is None:
            if not 1 <= period <= _LAST_ORDINAL:
                return float("-inf") if period < 1 else float("inf")
            midnight = local_midnight(date.fromordinal(period), self.timezone).timestamp()
            found = _DAY_STARTS[key] = midnight
        return found


_MONTH_STARTS: dict[tuple[str, int], float] = {}
_DAY_STARTS: dict[tuple[str, int], float] = {}
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_LAST_ORDINAL = date.max.toordinal()
_LABELS: dict[int, str] = {}
_MONTHS: dict[str, MonthOf] = {}
_DAYS: dict[str, DayOf] = {}


def _month_label(period: int) -> str:
    label = _LABELS.get(period)
    if label is None:
        year, month0 = divmod(period, 12)
        label = _LABELS[period] = f"{year:04d}-{month0 + 1:02d}"
    return label


def months_in(timezone: str) -> MonthOf:
    """The zone's `MonthOf`, shared (its run of months is found once)."""
    found = _MONTHS.get(timezone)
    if found is None:
        found = _MONTHS[timezone] = MonthOf(timezone)
    return found


def days_in(timezone: str) -> DayOf:
    """The zone's `DayOf`, shared."""
    found = _DAYS.get(timezone)
    if found is None:
        found = _DAYS[timezone] = DayOf(timezone)
    return found


def month_of_record(raw: bytes, month_of: MonthOf) -> str:
    """The local month of a stored attempt record's `launched_at` (a takeover reads every one).

    A launch's offset is within +-23:59 and a zone's within -12:00 and +14:00: they differ by
    less than two days, so a launch written on the 3rd to the 26th of a month is in that month
    in every zone, as its own text says (no instant needed: most records are read this way)."""
    found = raw.find(LAUNCHED_AT)
    if found >= 0:
        # a valid launch's text with '-' at 4 and 7 starts YYYY-MM-DD (the model checked it)
        text = raw[found + len(LAUNCHED_AT) : found + len(LAUNCHED_AT) + 10]
        if len(text) == 10 and text[4] == text[7] == 45 and b"03" <= text[8:] <= b"26":
            # interned: a takeover's tallies keep one per tenant and month (23 MB of copies
            # of the same few labels for 10,000 tenants, by tracemalloc)
            return sys.intern(text[:7].decode())
    return month_of(launched_at(raw))


# -- the tallies ----------------------------------------------------------------------------------


def empty_counter() -> Counter[Any]:
    """An empty Counter, made without `Counter.__init__` (which calls `update`, a Python
    method): 0.1 us instead of 0.4. The learner stage makes two for each tenant of a batch, and
    a batch holds one or two launches of most tenants. (A Counter has no state of its own
    beyond the dict's: the one `__new__` gives is the one `Counter()` gives.)"""
    return Counter.__new__(Counter)


# A window of more local days than this keeps its learners by first day in a dict while few days
# have any: a year's array is 1.5 KB for each tenant in each partition, and most tenants are
# small (10,000 tenants with learners in 12 partitions: 180 MB of arrays, mostly zeros). A
# month's array (124 bytes) is smaller than a dict of two days: it is an array from the start.
SPARSE_FROM_DAYS = 64
# ...and the dict becomes the array once it holds more days than this fraction of the window's
# (an entry of a dict costs about 16 times the 4 bytes of the array's)
DENSE_SHARE = 16


@dataclass(slots=True)
class WindowTally:
    """Learners of one window by the local day of their first attempt in it and by the local
    month of their `last`."""

    start: float  # the window's bounds, epoch seconds
    end: float
    first_day: int = 0  # the ordinal of the window's first local day
    # learners by the day of their first attempt: an array of C ints from `first_day` on (a few
    # hundred per window whatever the learners), or while few days have any in a long window,
    # a dict {day ordinal: learners} (see SPARSE_FROM_DAYS)
    firsts: array[int] | dict[int, int] = field(default_factory=dict)
    lasts: dict[str, int] = field(default_factory=dict)  # learners by the month of their last
    exact: bool = True  # False: a member's summary is unknown (stored by an older version)
    days: int = 0  # the window's local days

    @classmethod
    def of_window(cls, start: float, end: float, first_day: int, days: int) -> WindowTally:
        firsts: array[int] | dict[int, int] = {}
        if days <= SPARSE_FROM_DAYS:
            firsts = array("i", bytes(4 * days))
        return cls(start, end, first_day, firsts, days=days)

    def add_sparse(self, day: int, sign: int) -> None:
        """`sign` learners (+1 or -1) more whose first attempt is on `day` (a dict's)."""
        firsts = self.firsts
        assert isinstance(firsts, dict)
        n = firsts.get(day, 0) + sign
        if n:
            firsts[day] = n
        else:
            del firsts[day]
        if len(firsts) * DENSE_SHARE > self.days:
            dense = array("i", bytes(4 * self.days))
            for known, learners in firsts.items():
                dense[known - self.first_day] = learners
            self.firsts = dense

    def firsts_by_day(self) -> dict[int, int]:
        if isinstance(self.firsts, dict):
            return dict(self.firsts)  # (add_sparse keeps no day of 0)
        return {self.first_day + index: n for index, n in enumerate(self.firsts) if n}


def _bump(counter: Counter[Any], key: Any, by: int) -> None:
    value = counter.get(key, 0) + by
    if value:
        counter[key] = value
    else:
        del counter[key]


class WindowOfCut(Protocol):
    """What `TallyChange.summary_changed` reads of a window (the learner stage's WindowInfo)."""

    @property
    def name(self) -> str: ...
    @property
    def span(self) -> tuple[float, float]: ...
    @property
    def day_of(self) -> DayOf: ...
    @property
    def month_of(self) -> MonthOf: ...


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
    # attempts added (+) or removed (-)
    months: Counter[str] = field(default_factory=empty_counter)

    def replace(
        self,
        window: str,
        span: tuple[float, float],
        old: Summary | None,
        new: Summary | None,
        timezone: str,
    ) -> None:
        """A learner's summary of `window` changes from `old` to `new` (None: not a member)."""
        self._replace(window, span, old, new, days_in(timezone), months_in(timezone))

    def summary_changed(self, info: WindowOfCut, old: Summary | None, new: Summary | None) -> None:
        """`replace` for the learner stage's hot path: the window's name, bounds and its zone's
        days and months come found once per batch (streams/domain/learners.py: WindowInfo)."""
        self._replace(info.name, info.span, old, new, info.day_of, info.month_of)

    def _replace(
        self,
        window: str,
        span: tuple[float, float],
        old: Summary | None,
        new: Summary | None,
        day_of: DayOf,
        month_of: MonthOf,
    ) -> None:
        if window not in self.windows:
            self._bounds(window, span, day_of)
        start, end = span
        # A summary outside the window's bounds is one of another cut's window of the same name
        # (a takeover that finds the license of a re-cut durable and its memberships not, until
        # the replay re-cuts): tallied by its day it would land outside the window's days (an
        # IndexError, or a negative index counting it on the window's last days). It is
        # tallied as unknown instead (scans answer until the re-cut replaces the tallies), and
        # there is nothing to take back when it goes.
        if old is not None and start <= old[0] < end and start <= old[1] < end:
            self.summaries.append((window, day_of(old[0]), month_of(old[1]), -1))
        if new is not None:
            if start <= new[0] < end and start <= new[1] < end:
                self.summaries.append((window, day_of(new[0]), month_of(new[1]), 1))
            else:
                self.summaries.append((window, None, None, 1))

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
                tally = windows[window] = WindowTally.of_window(start, end, first_day, days)
            if day is None or month is None:
                tally.exact = False
                continue
            firsts = tally.firsts
            if type(firsts) is array:
                firsts[day - tally.first_day] += sign
            else:
                tally.add_sparse(day, sign)
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
    first = days[0].toordinal()
    for day, n in tally.firsts_by_day().items():
        per_day[day - first] += n
    return per_day


def advisor_counts(
    tally: WindowTally, months: Counter[str], timezone: str, cutoffs: Sequence[float]
) -> tuple[list[int], list[int]] | None:
    """For each cut-off (a local month start): the learners whose last attempt in the window is
    at or after it, and the tenant's attempts before it; None when a cut-off is not a local
    month start (then only a scan can tell)."""
    month_of = months_in(timezone)
    if not all(month_of.is_month_start(cutoff) for cutoff in cutoffs):
        return None
    active_after, removed = [], []
    for cutoff in cutoffs:
        label = month_of(cutoff)
        active_after.append(sum(n for month, n in tally.lasts.items() if month >= label))
        removed.append(sum(n for month, n in months.items() if month < label))
    return active_after, removed


def widen(summaries: dict[str, Summary], window: str, instant: float) -> None:
    """Take an attempt at `instant` in `window` into exact summaries (first and last)."""
    summary = summaries.get(window)
    if summary is None:
        summaries[window] = [instant, instant]
    elif instant < summary[0]:
        summary[0] = instant
    elif instant > summary[1]:
        summary[1] = instant


def summarised(cut: Cut, instants: Iterable[datetime]) -> dict[str, Summary]:
    """A learner's membership with exact summaries, from the instants of its attempts."""
    summaries: dict[str, Summary] = {}
    for instant in instants:
        widen(summaries, window_of(cut, instant).start.isoformat(), instant.timestamp())
    return summaries
