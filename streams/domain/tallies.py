"""What the forecast and the advisor read, kept up to date as attempts arrive (pure: no I/O).

Scanning a tenant's attempts for every forecast takes seconds at a million attempts. Instead a
learner partition keeps, per tenant, small tallies in memory beside its counts
(streams/domain/learners.py: TenantCounts), derived from state it stores anyway:

- each learner's membership stores, per window, a *summary* `[first, last]` (epoch seconds): its
  first attempt in the window, exactly, and an attempt of the local calendar month of its last
  one (rewritten only when a launch falls in a later month, so a learner active every day costs
  a write a month, not a write a launch);
- a `WindowTally` per window counts learners by the 15-minute slot of their first attempt (the
  forecast's daily growth: a learner joins the count on its first day) and of their `last` (the
  advisor: an `older_than` cut-off at a local month start leaves the learners whose last attempt
  is at or after it);
- `months` counts the tenant's attempts by local calendar month (the advisor's attempts removed
  by a cut-off: every attempt before it).

Slots are time-zone free; a local midnight falls on a slot bound in every zone in use (offsets
are whole quarter hours), which the readers check, answering from a scan otherwise. Tallies are
derived like the counts: changed only once a change is durable, rebuilt from the memberships and
attempts at a takeover, replaced at a re-cut; a window is tallied only if it ends after the
partition's takeover (the forecast and the advisor read the current window), so memory stays at
a few entries per tenant.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from streams.domain.reports import launched_at
from streams.domain.windows import local_midnight

SLOT_SECONDS = 900  # every zone's offset is a whole number of quarter hours

Summary = list[float]  # [first, last] of a learner in one window (see the module's docstring)
# a learner's windows (start dates) with their summaries; None: stored by an older version
Membership = dict[str, Summary | None]


def slot_of(instant: float) -> int:
    return int(instant // SLOT_SECONDS)


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
    """Learners of one window by the slot of their first attempt in it and of their `last`."""

    start: float  # the window's bounds, epoch seconds
    end: float
    firsts: Counter[int] = field(default_factory=Counter)
    lasts: Counter[int] = field(default_factory=Counter)
    exact: bool = True  # False: a member's summary is unknown (stored by an older version)

    def add(self, summary: Summary | None, sign: int = 1) -> None:
        if summary is None:
            self.exact = False
            return
        _bump(self.firsts, slot_of(summary[0]), sign)
        _bump(self.lasts, slot_of(summary[1]), sign)


def _bump(counter: Counter[int], key: int, by: int) -> None:
    value = counter.get(key, 0) + by
    if value:
        counter[key] = value
    else:
        del counter[key]


@dataclass
class TallyChange:
    """How a batch changes a tenant's tallies in one partition (applied once durable)."""

    # window -> its bounds, and the summaries leaving (-1) and joining (+1) it
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)
    summaries: list[tuple[str, Summary | None, int]] = field(default_factory=list)
    months: Counter[str] = field(default_factory=Counter)  # attempts added (+) or removed (-)

    def replace(
        self, window: str, span: tuple[float, float], old: Summary | None, new: Summary | None
    ) -> None:
        """A learner's summary of `window` changes from `old` to `new` (None: not a member)."""
        self.spans[window] = span
        if old is not None:
            self.summaries.append((window, old, -1))
        if new is not None:
            self.summaries.append((window, new, 1))

    def unknown(self, window: str, span: tuple[float, float]) -> None:
        """A member of `window` whose summary is not known: the window's tally is not exact."""
        self.spans[window] = span
        self.summaries.append((window, None, 1))

    def __bool__(self) -> bool:
        return bool(self.summaries) or any(self.months.values())


@dataclass
class Tallies:
    """A tenant's tallies in one partition: windows ending after `tracked_from`, and months."""

    tracked_from: float = 0.0
    windows: dict[str, WindowTally] = field(default_factory=dict)
    months: Counter[str] = field(default_factory=Counter)

    def window(self, name: str, span: tuple[float, float]) -> WindowTally | None:
        """The tally of a window, started empty when it ends after the takeover (it had no
        member then); None for a window that is not tallied."""
        tally = self.windows.get(name)
        if tally is None and span[1] > self.tracked_from:
            tally = self.windows[name] = WindowTally(*span)
        return tally

    def apply(self, change: TallyChange) -> None:
        # runs for every batch, with an entry for most launches: loops kept flat
        windows, tracked_from, spans = self.windows, self.tracked_from, change.spans
        for window, summary, sign in change.summaries:
            tally = windows.get(window)
            if tally is None:
                span = spans[window]
                if span[1] <= tracked_from:
                    continue
                tally = windows[window] = WindowTally(*span)
            if summary is None:
                tally.exact = False
                continue
            firsts, lasts = tally.firsts, tally.lasts
            slot = int(summary[0] // SLOT_SECONDS)
            n = firsts.get(slot, 0) + sign
            if n:
                firsts[slot] = n
            else:
                del firsts[slot]
            slot = int(summary[1] // SLOT_SECONDS)
            n = lasts.get(slot, 0) + sign
            if n:
                lasts[slot] = n
            else:
                del lasts[slot]
        for month, n in change.months.items():
            if n:
                _bump(self.months, month, n)  # type: ignore[arg-type]

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


def daily_firsts(tally: WindowTally, days: Sequence[date], midnights: Sequence[float]) -> Any:
    """Learners per local day of their first attempt in the window ([n per day]), or None when
    a day does not start on a slot bound (then only a scan can tell)."""
    if any(midnight % SLOT_SECONDS for midnight in midnights):
        return None
    per_day = [0] * len(days)
    for slot, n in tally.firsts.items():
        # a slot lies within one day: the midnights fall on slot bounds
        per_day[bisect_right(midnights, slot * SLOT_SECONDS) - 1] += n
    return per_day


def advisor_counts(
    tally: WindowTally, months: Counter[str], timezone: str, cutoffs: Sequence[float]
) -> tuple[list[int], list[int]] | None:
    """For each cut-off (a local month start): the learners whose last attempt in the window is
    at or after it, and the tenant's attempts before it; None when a cut-off is not a local
    month start on a slot bound (then only a scan can tell)."""
    month_of = MonthOf(timezone)
    if any(c % SLOT_SECONDS or not month_of.is_month_start(c) for c in cutoffs):
        return None
    lasts = sorted(tally.lasts.items())
    ordered_months = sorted(months.items())
    active_after, removed = [], []
    for cutoff in cutoffs:
        first_slot = slot_of(cutoff)
        active_after.append(sum(n for slot, n in lasts if slot >= first_slot))
        label = month_of(cutoff)
        removed.append(sum(n for month, n in ordered_months if month < label))
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
