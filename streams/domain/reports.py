"""The administrators' reports, from the attempts of one learner partition (pure: no I/O).

A learner partition holds, for each of its learners, every attempt not physically deleted (the
`attempts` table, keys `{tenant}/{learner}/{attempt}` in key order). The reports read a tenant's
attempts learner by learner and answer, per partition:
- `window_rows`: the learners counted in a window, with their first and last attempt in it and
  how many they made (logically deleted attempts count, as they do for the count);
- `learner_rows`: every learner with attempts (Total Learners), active in the current window or
  not, with their last attempt;
- `GroupTally`, `daily_firsts`, `advisor_tally`: the aggregates of the groups, forecast and
  advisor calls, which partitions add up.
The rows of one partition come out ordered by learner id (`learner_order`), so the rows of all
partitions merge into one ordered stream without holding any of them.
"""

from __future__ import annotations

import csv
import heapq
import io
import re
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from math import inf
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from streams.domain.windows import local_midnight

# A tenant's attempts of one learner: (learner_id, [launched_at instants as epoch seconds]).
LearnerAttempts = tuple[str, list[float]]


def learners_of(
    rows: Iterable[tuple[bytes, bytes]], prefix_length: int
) -> Iterator[LearnerAttempts]:
    """Group `{tenant}/{learner}/{attempt}` rows (key order, the tenant prefix `prefix_length`
    bytes long) by learner: each learner once, with the instants of its attempts."""
    current: bytes | None = None  # compared as bytes, decoded once per learner
    instants: list[float] = []
    for key, value in rows:
        learner = key[prefix_length : key.index(b"/", prefix_length)]
        if learner != current:
            if current is not None:
                yield current.decode(), instants
            current, instants = learner, []
        instants.append(launched_at(value))
    if current is not None:
        yield current.decode(), instants


LAUNCHED_AT = b'"launched_at":"'


def launched_at(value: bytes) -> float:
    """The `launched_at` instant of a stored attempt record. The stages write it with orjson (no
    spaces), so the field is found without parsing the whole record: a third of the time."""
    start = value.find(LAUNCHED_AT)
    if start < 0:
        return _instant(orjson.loads(value)["launched_at"])
    start += len(LAUNCHED_AT)
    return _instant(value[start : value.index(b'"', start)].decode())


def _instant(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _sensitive_prefixes(learner_id: str) -> Iterator[str]:
    """The proper prefixes p of an id that the id continues with a character below '/' after:
    the id's key `id/` sorts before `p/`, so in key order the id comes first, though p < id as
    strings. Shortest first; each one's `p/` sorts after the next one's."""
    for index in range(1, len(learner_id)):
        if learner_id[index] < "/":
            yield learner_id[:index]


# prefixes whose existence a LearnerOrder remembers (cleared past it: a bound on its memory)
KNOWN_PREFIXES_MAX = 10_000
# rows a LearnerOrder holds before it asks whether the prefixes they wait for exist: ids like
# `john.doe` wait for one more row (`john/` passes at once), and asking for each would cost a
# look-up a row; ids like `user-00042` all wait for the same prefix, asked once
HELD_BEFORE_ASKING = 1_000


class LearnerOrder:
    """Rows pushed in key order of `{learner}/` come out in order of learner id.

    The two orders differ only where one id is a prefix of another that continues with a
    character below '/' ('-', '.', ' ', ...): "john.doe/" < "john/" but "john" < "john.doe". Such an
    id is held back until no id that must come before it can still arrive; other rows pass at
    once, so memory stays flat. `exists` says whether a learner id is there at all (a one-row
    look-up): without it, every `user-00042` of a partition would wait for a learner `user`
    that none has, to the end of the scan (helper-60's review: a million rows held). Once
    HELD_BEFORE_ASKING rows wait, the order asks, and a prefix that does not exist holds
    nothing back; only learners that do exist and prefix many others hold them until they
    arrive. A report is not a snapshot: a prefix learner whose first launch is stored after the
    look-up, while the report reads, would arrive after rows it must precede went out; it is
    left out, as is any learner stored behind the scan (helper-62's review)."""

    def __init__(self, exists: Callable[[str], bool] | None = None) -> None:
        self._pending: deque[tuple[str, Any]] = deque()
        self._exists = exists
        self._known: dict[str, bool] = {}
        self._last_out: str | None = None

    def push(self, learner: str, row: Any) -> list[tuple[str, Any]]:
        """The rows that are final now, in order."""
        if self._last_out is not None and learner < self._last_out:
            return []  # stored while the report read, after rows it must precede went out
        pending = self._pending
        place = len(pending)
        while place > 0 and _continues_below_slash(pending[place - 1][0], learner):
            place -= 1
        pending.insert(place, (learner, row))
        arrived = learner + "/"
        ready = []
        while pending:
            ask = self._exists is not None and len(pending) > HELD_BEFORE_ASKING
            if self._may_come_before(pending[0][0], arrived, ask):
                break
            ready.append(pending.popleft())
        if ready:
            self._last_out = ready[-1][0]
        return ready

    def _may_come_before(self, learner: str, arrived: str, ask: bool) -> bool:
        """Whether an id that sorts before `learner` may still arrive (all have up to `arrived`;
        without `ask`, any prefix not passed yet may)."""
        for prefix in _sensitive_prefixes(learner):
            if prefix + "/" < arrived:
                return False  # it, and every longer one, has had its turn
            if not ask or self._exists_(prefix):
                return True
        return False

    def _exists_(self, prefix: str) -> bool:
        known = self._known.get(prefix)
        if known is None:
            assert self._exists is not None
            if len(self._known) >= KNOWN_PREFIXES_MAX:
                self._known.clear()
            known = self._known[prefix] = self._exists(prefix)
        return known

    def finish(self) -> list[tuple[str, Any]]:
        ready, self._pending = list(self._pending), deque()
        return ready


def learner_order(rows: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """`LearnerOrder` over an iterable."""
    order = LearnerOrder()
    for learner, row in rows:
        yield from order.push(learner, row)
    yield from order.finish()


def _continues_below_slash(longer: str, shorter: str) -> bool:
    return len(longer) > len(shorter) and longer.startswith(shorter) and longer[len(shorter)] < "/"


@dataclass(frozen=True)
class Span:
    """An instant range [start, end) in epoch seconds (a window, a day, a month)."""

    start: float
    end: float

    def holds(self, instant: float) -> bool:
        return self.start <= instant < self.end


def window_rows(
    learners: Iterable[LearnerAttempts], window: Span
) -> Iterator[tuple[str, float, float, int]]:
    """(learner, first, last, attempts) of every learner with an attempt in the window."""
    start, end = window.start, window.end
    for learner, instants in learners:
        if len(instants) == 1:  # most learners: no list to build
            only = instants[0]
            if start <= only < end:
                yield learner, only, only, 1
            continue
        inside = [instant for instant in instants if start <= instant < end]
        if inside:
            yield learner, min(inside), max(inside), len(inside)


def learner_rows(
    learners: Iterable[LearnerAttempts], current: Span
) -> Iterator[tuple[str, bool, float]]:
    """(learner, active in the current window, last attempt) of every learner with attempts."""
    for learner, instants in learners:
        yield learner, any(current.holds(instant) for instant in instants), max(instants)


@dataclass
class GroupTally:
    """Active learners of a window per team and per role, and in no team."""

    teams: Counter[str] = field(default_factory=Counter)
    roles: Counter[str] = field(default_factory=Counter)
    unassigned: int = 0

    def add(self, groups: Mapping[str, Sequence[str]] | None) -> None:
        teams = set((groups or {}).get("teams") or ())
        for team in teams:
            self.teams[team] += 1
        for role in set((groups or {}).get("roles") or ()):
            self.roles[role] += 1
        if not teams:
            self.unassigned += 1

    def merge(self, other: GroupTally) -> None:
        self.teams.update(other.teams)
        self.roles.update(other.roles)
        self.unassigned += other.unassigned

    def as_json(self) -> dict[str, Any]:
        return {
            "teams": [{"id": k, "active_learners": v} for k, v in sorted(self.teams.items())],
            "roles": [{"id": k, "active_learners": v} for k, v in sorted(self.roles.items())],
            "unassigned": self.unassigned,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GroupTally:
        return cls(
            Counter({t["id"]: t["active_learners"] for t in data["teams"]}),
            Counter({r["id"]: r["active_learners"] for r in data["roles"]}),
            data["unassigned"],
        )


def local_day(instant: float, timezone: str) -> date:
    return datetime.fromtimestamp(instant, ZoneInfo(timezone)).date()


class LocalDays:
    """The local days of a window in a time zone, and which of them an instant falls on."""

    def __init__(self, window: Span, timezone: str) -> None:
        zone = ZoneInfo(timezone)
        first_day = datetime.fromtimestamp(window.start, zone).date()
        last_day = datetime.fromtimestamp(window.end, zone).date()
        self.window = window
        self.days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
        # local midnights of the window's days (computed once a call: a zone look-up each is
        # slow): a learner's day is found by bisection
        self.midnights = [local_midnight(day, timezone).timestamp() for day in self.days]

    def firsts(self, learners: Iterable[LearnerAttempts]) -> list[int]:
        """How many of these learners made their first attempt of the window on each day."""
        per_day = [0] * len(self.days)
        midnights = self.midnights
        for _, first, _, _ in window_rows(learners, self.window):
            per_day[bisect_right(midnights, first) - 1] += 1
        return per_day

    def named(self, per_day: Sequence[int]) -> Counter[str]:
        return Counter({self.days[i].isoformat(): n for i, n in enumerate(per_day) if n})


def daily_firsts(learners: Iterable[LearnerAttempts], window: Span, timezone: str) -> Counter[str]:
    """How many learners made their first attempt of the window on each local day."""
    days = LocalDays(window, timezone)
    return days.named(days.firsts(learners))


def advisor_tally(
    learners: Iterable[LearnerAttempts], window: Span, cutoffs: Sequence[float]
) -> tuple[list[int], list[int]]:
    """For each cut-off c (ascending): the learners still active in the window after a physical
    `older_than` c deletion (their last attempt in the window is at c or later), and the
    attempts such a deletion removes (every attempt of the tenant launched before c)."""
    # counted by where each instant falls among the cut-offs, then summed up (one bisection per
    # attempt, whatever the number of cut-offs)
    last_at = [0] * (len(cutoffs) + 1)
    launched_at = [0] * (len(cutoffs) + 1)
    for _, instants in learners:
        last_inside = -inf
        for instant in instants:
            launched_at[bisect_right(cutoffs, instant)] += 1
            if window.holds(instant) and instant > last_inside:
                last_inside = instant
        if last_inside > -inf:
            last_at[bisect_right(cutoffs, last_inside)] += 1
    # active after cut-off i: last attempt in the window at or after it (bucket > i)
    # removed by cut-off i: attempts before it (bucket <= i)
    active_after = [sum(last_at[i + 1 :]) for i in range(len(cutoffs))]
    removed = [sum(launched_at[: i + 1]) for i in range(len(cutoffs))]
    return active_after, removed


# -- output formats -------------------------------------------------------------------------------


def shown_utilization(active: int, limit: int | None) -> float | None:
    """Active learners as a % of the limit, cut (not rounded) to one decimal for people: 9,999 of
    10,000 is 99.9 %, never "100.0 %" beside a 100 % threshold not reached. So a shown figure is
    at or above a whole threshold percentage exactly when that threshold is reached."""
    if limit is None:
        return None
    return (active * 1000 // limit) / 10


# A spreadsheet runs a cell that starts with one of these as a formula: an id sent by the LMS
# as `=HYPERLINK(...)` would run on the administrator's machine (CSV injection, OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# the full-width forms some spreadsheets read as the same signs
_WIDE_FORMULA_STARTS = ("\uff1d", "\uff0b", "\uff0d", "\uff20")


def spreadsheet_text(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text: a string that starts like a formula, also
    after leading blanks (` =1+1`) or in full-width signs (`\\uff1d1+1`), gets a leading apostrophe
    (OWASP's advice); anything else, numbers included, is left as it is. JSON and JSON lines
    carry ids exactly."""
    if isinstance(value, str) and (
        value.startswith(FORMULA_STARTS)
        or value.lstrip().startswith(FORMULA_STARTS + _WIDE_FORMULA_STARTS)
    ):
        return "'" + value
    return value


def terminal_text(text: str) -> str:
    """Text for a terminal, every character that is not printable (control characters, line
    breaks, Unicode direction overrides) written as its Python escape (`\\x1b`, `\\n`,
    `\\u202e`): team and role ids may hold any character, and printed as they are they could
    clear or retitle the administrator's terminal or forge a row of a table."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


# Python's csv module quotes a cell with a comma, a quote, CR or LF; readers that split lines
# as Python's str.splitlines does also break at these, so a cell with one is quoted too
_LINE_BREAKS = frozenset("\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


_LINE_BREAK = re.compile("[" + "".join(re.escape(char) for char in sorted(_LINE_BREAKS)) + "]")


def csv_rows(rows: Sequence[Sequence[Any]]) -> str:
    """Rows as `csv_line` writes them (their cells already `spreadsheet_text`'s), with one
    writer for all of them: a report's rows were written with a plain writer, so an id with a
    line break of `_LINE_BREAKS` went out unquoted (helper-82). The look for one runs over the
    written text, so rows without one (all but never) cost nothing more."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    text = out.getvalue()
    if _LINE_BREAK.search(text) is None:
        return text
    out = io.StringIO()
    plain = csv.writer(out, lineterminator="\r\n")
    quoted = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    for row in rows:
        breaks = any(isinstance(c, str) and not _LINE_BREAKS.isdisjoint(c) for c in row)
        (quoted if breaks else plain).writerow(row)
    return out.getvalue()


def csv_line(values: Sequence[Any]) -> str:
    """One RFC 4180 line (CRLF), quoting what needs quoting; text cells never run as formulas."""
    cells = [spreadsheet_text(v) for v in values]
    out = io.StringIO()
    if any(isinstance(c, str) and not _LINE_BREAKS.isdisjoint(c) for c in cells):
        # (rare: any such id; every cell quoted is still RFC 4180)
        csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_ALL).writerow(cells)
    else:
        csv.writer(out, lineterminator="\r\n").writerow(cells)
    return out.getvalue()


# -- forecast and advisor (from the partitions' tallies, added up) -------------------------------

FORECAST_METHOD = (
    "linear: the learners counted so far divided by the window's days elapsed (today included), "
    "continued at that pace to the window's last day"
)


def forecast(
    firsts: Mapping[str, int],
    window_start: date,
    window_end: date,
    today: date,
    limit: int | None,
) -> dict[str, Any]:
    """The count at the end of each local day of the window so far (learners by the day of
    their first attempt in the window: deleted attempts are gone from both), a linear projection
    to the window's end, and the day the limit was or will be reached at that pace (null when
    never within the window)."""
    last_day = min(today, window_end - timedelta(days=1))
    daily: list[dict[str, Any]] = []
    total = 0
    reached_on: date | None = None
    day = window_start
    while day <= last_day:
        total += firsts.get(day.isoformat(), 0)
        daily.append({"date": day.isoformat(), "active_learners": total})
        if limit is not None and reached_on is None and total >= limit:
            reached_on = day
        day += timedelta(days=1)
    elapsed = max(len(daily), 1)
    remaining = max((window_end - timedelta(days=1) - last_day).days, 0)
    pace = total / elapsed
    projected = round(total + pace * remaining)
    if limit is not None and reached_on is None and pace > 0:
        # in integers: a float pace makes an exact day a hair more, one day late
        days_needed = -(-(limit - total) * elapsed // total)
        # compared in days first: at a slow pace the day would pass 9999-12-31 (OverflowError)
        if days_needed < (window_end - last_day).days:
            reached_on = last_day + timedelta(days=days_needed)
    return {
        "daily": daily,
        "projected_at_window_end": projected,
        "method": FORECAST_METHOD,
        "pace_per_day": round(pace, 3),
        "limit_reached_on": None if reached_on is None else reached_on.isoformat(),
    }


def month_starts(first: date, last: date) -> list[date]:
    """The first days of the months from `first`'s month (or the next, if `first` is not a month
    start) to `last`, inclusive."""
    month = first if first.day == 1 else (first.replace(day=1) + timedelta(days=32)).replace(day=1)
    starts = []
    while month <= last:
        starts.append(month)
        month = (month + timedelta(days=32)).replace(day=1)
    return starts


def under_the_limit(active_learners: int | None, limit: int | None) -> bool:
    """Whether the count is under a limit (at the limit is not under it); no limit, no."""
    return limit is not None and active_learners is not None and active_learners < limit


def smallest_under_limit(
    options: Sequence[Mapping[str, Any]], limit: int | None, active_learners: int
) -> Any:
    """The earliest cut-off (the smallest deletion) that leaves fewer learners than the limit;
    None when no cut-off does, and when the count is under the limit already (the earliest
    cut-off would still remove older windows' attempts: nothing to recommend)."""
    if limit is None or under_the_limit(active_learners, limit):
        return None
    for option in options:  # ascending: the earliest cut-off deletes the least
        if option["active_learners_after"] < limit:
            return option["older_than"]
    return None


async def merge_ordered(
    streams: Sequence[AsyncIterator[list[list[Any]]]], out_chunk: int = 5_000
) -> AsyncIterator[list[list[Any]]]:
    """Chunked streams, each ordered by its rows' first field, merged into one ordered stream
    (the partitions' lists of a report: a learner lives in one partition, so no two rows tie)."""
    buffers: list[list[list[Any]]] = [[] for _ in streams]
    positions = [0] * len(streams)

    async def refill(index: int) -> bool:
        chunk = await anext(streams[index], None)
        if not chunk:
            return False
        buffers[index], positions[index] = chunk, 0
        return True

    heap: list[tuple[str, int]] = []
    try:
        for index in range(len(streams)):
            if await refill(index):
                heap.append((buffers[index][0][0], index))
        heapq.heapify(heap)
        out: list[list[Any]] = []
        while heap:
            _, index = heapq.heappop(heap)
            out.append(buffers[index][positions[index]])
            positions[index] += 1
            if positions[index] < len(buffers[index]) or await refill(index):
                heapq.heappush(heap, (buffers[index][positions[index]][0], index))
            if len(out) >= out_chunk:
                yield out
                out = []
        if out:
            yield out
    finally:  # a reader that stops early (a first page) ends the other workers' answers too
        for stream in streams:
            await stream.aclose()  # type: ignore[attr-defined]
