"""Learner-stage transitions: attempts, window membership and the partition's derived counters.

State per learner (key `tenant/learner`): the windows of the tenant's current cut in which the
learner has at least one attempt, stored as {window start date: summary} (the summary, its first
and last attempt there, feeds the report tallies: streams/domain/tallies.py). A learner is active
in a window when the window is in its membership, and counts towards Total Learners when its
membership is not empty.

Adding an attempt's window is a set union and its summary a min and a max, so applying a launch
twice changes nothing, whatever part of the first application became durable: an attempt record
without its membership entry is healed by the repeat, a membership entry without its attempt
record by the new attempt. Removing attempts (a deletion) recomputes the membership from the
attempts that remain.

`apply_attempts` applies a whole batch of tracked launches of one partition: it takes what the
batch needs from RocksDB (`LearnerReads`) and returns what to write and what changed.
"""

from __future__ import annotations

import sys
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from functools import lru_cache
from typing import Any, NamedTuple

from streams.domain.deletions import Erasures, erasure_of, hidden_by
from streams.domain.tallies import (
    DayOf,
    Membership,
    MonthOf,
    Tallies,
    TallyChange,
    days_in,
    empty_counter,
    months_in,
    read_membership,
)
from streams.domain.windows import Cut, Window, window_at_index, window_of, window_starting

Windows = set[str]  # window start dates (ISO) of one learner


def windows_of(stored: Any) -> Windows:
    """The windows of a stored membership (any of its stored forms)."""
    return set(read_membership(stored))


class AttemptOutcome(Enum):
    NEW = "new"
    REPEAT = "repeat"  # the same attempt again: a no-op
    CONFLICT = "conflict"  # same attempt id, other launched_at or element_id: dead-lettered


def classify_attempt(
    stored: Mapping[str, object] | None, element_id: str, launched_at: datetime
) -> AttemptOutcome:
    """What a tracked launch means given the attempt record already stored under its key."""
    if stored is None:
        return AttemptOutcome.NEW
    same_time = datetime.fromisoformat(str(stored["launched_at"])) == launched_at
    if same_time and stored["element_id"] == element_id:
        return AttemptOutcome.REPEAT
    return AttemptOutcome.CONFLICT


AttemptId = tuple[str, str, str]  # tenant, learner, attempt
LearnerId = tuple[str, str]  # tenant, learner


class TrackedAttempt(NamedTuple):
    """One tracked launch as the learner stage receives it from ingest (a row of a command)."""

    tenant_id: str
    learner_id: str
    element_id: str
    attempt_id: str
    launched_at_text: str  # ISO 8601 with offset, as stored in the attempt record
    source_partition: int  # where the launch is on the `launches` topic (for a dead letter)
    source_offset: int
    raw: str | None = None  # the original record when small; else fetched by its position
    received_ms: int = 0  # the launch's Kafka timestamp (for the launch -> count latency metric)

    @property
    def launched_at(self) -> datetime:
        return datetime.fromisoformat(self.launched_at_text)

    @property
    def attempt(self) -> AttemptId:
        return (self.tenant_id, self.learner_id, self.attempt_id)

    @property
    def learner(self) -> LearnerId:
        return (self.tenant_id, self.learner_id)

    def record(self) -> dict[str, Any]:
        """The `attempts` record this launch creates."""
        return {
            "tenant_id": self.tenant_id,
            "learner_id": self.learner_id,
            "element_id": self.element_id,
            "attempt_id": self.attempt_id,
            "launched_at": self.launched_at_text,
            "logically_deleted": False,
        }


@dataclass
class LearnerReads:
    """What the store holds for a batch of attempts (None where nothing is stored)."""

    attempts: dict[AttemptId, Any]
    memberships: dict[LearnerId, Any]
    tenants: dict[str, Any]  # tenant -> {"license": ...} as this partition applied it
    # the erasure markers that may cover a launch; None when no tenant of the batch has any
    erasures: Callable[[TrackedAttempt], Erasures] | None = None


@dataclass
class CountChange:
    """How one tenant's counters in this partition change: learners joining (+) or leaving (-)
    windows, and the tenant."""

    windows: Counter[str] = field(default_factory=empty_counter)
    total: int = 0
    oldest_ms: int | None = None  # the earliest launch timestamp behind the change (a metric)
    tallies: TallyChange = field(default_factory=TallyChange)

    @property
    def counts_changed(self) -> bool:
        return self.total != 0 or any(self.windows.values())


@dataclass(frozen=True)
class Rejection:
    item: TrackedAttempt
    reason: str  # "conflict" | "erased"
    detail: str


@dataclass
class BatchResult:
    attempts: dict[AttemptId, dict[str, Any]] = field(default_factory=dict)  # records to write
    # memberships to write (the stored form: streams/domain/tallies.py)
    memberships: dict[LearnerId, Membership] = field(default_factory=dict)
    new_tenants: list[str] = field(default_factory=list)  # first seen in this partition
    rejected: list[Rejection] = field(default_factory=list)
    conflicts: list[TrackedAttempt] = field(default_factory=list)  # to remember as rejected
    changes: dict[str, CountChange] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    cuts: dict[str, Cut] = field(default_factory=dict)  # the cut applied to each tenant


def apply_attempts(
    items: Iterable[TrackedAttempt],
    reads: LearnerReads,
    cut_of: Callable[[Any], Cut],
) -> BatchResult:
    """Apply tracked launches in order; later items see what earlier ones wrote.

    `cut_of` turns a tenant's stored license entry (or None) into its window cut.
    """
    result = BatchResult()
    attempts = dict(reads.attempts)
    memberships: dict[LearnerId, Membership] = {}
    cuts = result.cuts
    # tenant -> the windows of its cut seen so far (`seen_windows_of`: kept across batches):
    # most launches fall in one of a few windows, and comparisons are cheaper than `window_of`
    seen_windows: dict[str, list[SeenWindow]] = {}
    # counted apart and added to `result.outcomes` at the end (a Counter's += is a call)
    added = repeated = 0
    for item in items:
        tenant_id = item.tenant_id
        cut = cuts.get(tenant_id)
        if cut is None:
            stored_tenant = reads.tenants.get(tenant_id)
            if stored_tenant is None and tenant_id not in result.new_tenants:
                result.new_tenants.append(tenant_id)
            cut = cuts[tenant_id] = cut_of(stored_tenant)
            seen_windows[tenant_id] = seen_windows_of(cut)
        launched_at = datetime.fromisoformat(item.launched_at_text)
        ident = (tenant_id, item.learner_id, item.attempt_id)
        stored = attempts.get(ident)
        if stored is None:
            outcome = AttemptOutcome.NEW
        else:
            outcome = classify_attempt(stored, item.element_id, launched_at)
        markers = None
        if outcome is not AttemptOutcome.REPEAT:
            # A launch an executed physical deletion covers is erased, also when a stored
            # attempt differs from it: the markers only grow, so the verdict is the same on a
            # replay that sees attempts of later commands (a conflict would not be, and once
            # remembered it would turn a later erased launch into a conflict).
            markers = reads.erasures(item) if reads.erasures else None
            erased = erasure_of(markers, launched_at) if markers is not None else None
            if erased is not None:
                result.outcomes["erased"] += 1
                result.rejected.append(Rejection(item, "erased", erased))
                continue
        if outcome is AttemptOutcome.CONFLICT:
            result.outcomes["conflict"] += 1
            result.rejected.append(Rejection(item, "conflict", conflict_detail(stored, item)))
            result.conflicts.append(item)
            continue
        if outcome is AttemptOutcome.NEW:
            if markers is not None and (item.element_id, launched_at) in markers.rejected:
                result.outcomes["conflict"] += 1
                detail = (
                    f"attempt {item.attempt_id} of learner {item.learner_id}: this launch was "
                    "rejected before as a conflict with the stored attempt"
                )
                result.rejected.append(Rejection(item, "conflict", detail))
                continue
            record = item.record()
            if markers is not None and hidden_by(markers, launched_at):
                record["logically_deleted"] = True
            attempts[ident] = record
            result.attempts[ident] = record
            added += 1
        else:
            repeated += 1
        instant = launched_at.timestamp()
        info = _window_info(seen_windows[tenant_id], cut, launched_at, instant)
        window, month_starts = info.name, info.month_starts
        month = bisect_right(month_starts, instant)  # the window's months: 1 is its first
        change = result.changes.get(tenant_id)
        if outcome is AttemptOutcome.NEW:
            if change is None:
                change = result.changes[tenant_id] = CountChange()
            months = change.tallies.months
            label = info.labels[month - 1]
            months[label] = months.get(label, 0) + 1
        # A repeat joins its window too: its membership entry may be what a crash lost.
        learner = (tenant_id, item.learner_id)
        membership = memberships.get(learner)
        if membership is None:
            membership = memberships[learner] = read_membership(reads.memberships.get(learner))
        if window in membership:
            summary = membership[window]
            if summary is None:
                continue  # stored by an older version: its tally is not exact anyway
            first, last = summary
            if instant < first:
                first = instant
            elif instant > last and month > bisect_right(month_starts, last):
                last = instant  # a later month than `last`'s
            else:
                continue
            membership[window] = [first, last]
            if change is None:
                change = result.changes[tenant_id] = CountChange()
            change.tallies.summary_changed(info, summary, membership[window])
            result.memberships[learner] = membership  # written as it is after the batch
            continue
        if change is None:
            change = result.changes[tenant_id] = CountChange()
        if item.received_ms and (change.oldest_ms is None or item.received_ms < change.oldest_ms):
            change.oldest_ms = item.received_ms
        if not membership:
            change.total += 1
        membership[window] = [instant, instant]
        change.windows[window] += 1
        change.tallies.summary_changed(info, None, membership[window])
        result.memberships[learner] = membership
    if added:
        result.outcomes[AttemptOutcome.NEW.value] += added
    if repeated:
        result.outcomes[AttemptOutcome.REPEAT.value] += repeated
    return result


SEEN_WINDOWS = 6


class WindowInfo(NamedTuple):
    """What the learner stage needs of a window, computed once (`window_info`)."""

    window: Window
    name: str  # its start date
    span: tuple[float, float]  # its bounds, epoch seconds
    month_starts: list[float]  # where each of its local months starts (the first: the window's)
    labels: list[str]  # those months ("YYYY-MM")
    day_of: DayOf  # the local days and months of the cut's time zone (for the tallies)
    month_of: MonthOf


# a window seen in a batch, with its information
SeenWindow = WindowInfo


def _window_info(
    seen: list[SeenWindow], cut: Cut, instant: datetime, timestamp: float
) -> WindowInfo:
    """The window of `cut` holding `instant` (`timestamp` in epoch seconds), from the windows
    `seen` so far (which it adds to): most launches of a batch fall in one of a few windows,
    and comparing epoch seconds is cheaper than `window_of` (and than comparing datetimes, which
    asks their time zones for offsets)."""
    for info in seen:
        start, end = info.span
        # Strictly inside, so exact: `timestamp()` is monotone, so a float strictly between the
        # bounds' floats is an instant strictly between the bounds. Far from 1970 two instants
        # a microsecond apart may share a float, so one equal to a bound is `window_of`'s call.
        if start < timestamp < end:
            return info
    info = window_info(cut, window_of(cut, instant).index)
    # at most SEEN_WINDOWS, the longest seen going first (the list lives on across batches: a
    # backfill over years must not keep the current windows out for good); a launch on a
    # bound comes here with a window already seen, which is not added again
    if all(known.name != info.name for known in seen):
        if len(seen) >= SEEN_WINDOWS:
            del seen[0]
        seen.append(info)
    return info


# cuts whose seen windows are kept (`seen_windows_of`); all are dropped when more come (a
# cut is a tenant's license: few differ, and finding a window again is cheap)
SEEN_CUTS = 4_096
_SEEN_BY_CUT: dict[Cut, list[SeenWindow]] = {}


def seen_windows_of(cut: Cut) -> list[SeenWindow]:
    """The windows of `cut` seen so far, shared by every batch and tenant of the cut: a window's
    information depends on the cut alone (`window_info`), and a batch holds only a few launches
    of most tenants, which found their windows again batch after batch."""
    seen = _SEEN_BY_CUT.get(cut)
    if seen is None:
        if len(_SEEN_BY_CUT) >= SEEN_CUTS:
            _SEEN_BY_CUT.clear()
        seen = _SEEN_BY_CUT[cut] = []
    return seen


def forget_seen_windows() -> None:
    """Start with no window seen (the simulator: a seed runs the same whatever ran before)."""
    _SEEN_BY_CUT.clear()


@lru_cache(maxsize=65_536)
def window_info(cut: Cut, index: int) -> WindowInfo:
    window = window_at_index(cut, index)
    span = window_span(window)
    month_of = months_in(cut.timezone)
    month_starts, labels = [], []
    start = span[0]
    while start < span[1]:
        month_starts.append(start)
        labels.append(month_of(start))
        start = month_of.end_of(start)
    return WindowInfo(
        window,
        window.start.isoformat(),
        span,
        month_starts,
        labels,
        days_in(cut.timezone),
        month_of,
    )


def window_span(window: Window) -> tuple[float, float]:
    return window.start_at.timestamp(), window.end_at.timestamp()


def conflict_detail(stored: Mapping[str, Any] | None, item: TrackedAttempt) -> str:
    assert stored is not None
    return (
        f"attempt {item.attempt_id} of learner {item.learner_id} exists with "
        f"element_id {stored['element_id']!r} and launched_at {stored['launched_at']}; this launch "
        f"says {item.element_id!r} and {item.launched_at_text}"
    )


def tally_member(tallies: Tallies, membership: Membership, cut: Cut) -> None:
    """Add a learner's membership to its tenant's tallies (a takeover, a re-cut)."""
    change = TallyChange()
    for window, summary in membership.items():
        span = span_of_window(cut, window)
        if span is None:
            continue  # not a window of this cut: a re-cut its replay has still to redo
        if summary is None:
            change.unknown(window, span, cut.timezone)
        else:
            change.replace(window, span, None, summary, cut.timezone)
    tallies.apply(change)


@lru_cache(maxsize=65_536)
def span_of_window(cut: Cut, name: str) -> tuple[float, float] | None:
    window = window_starting(cut, date.fromisoformat(name))
    return None if window is None else window_span(window)


@dataclass
class TenantCounts:
    """Active learners per window and total learners of one tenant in one partition."""

    windows: dict[str, int] = field(default_factory=dict)
    total: int = 0
    cut_id: str = ""
    seq: int = -1  # offset of the last command of this partition applied to these counts
    oldest_ms: int | None = None  # the earliest launch behind changes not yet reported

    def add_learner(self, windows: Iterable[str]) -> None:
        windows = list(windows)
        if not windows:
            return
        self.total += 1
        for window in windows:
            # interned: a takeover reads every membership's window names from its own bytes,
            # and each (partition, tenant) would keep copies of the same few dates
            window = sys.intern(window)
            self.windows[window] = self.windows.get(window, 0) + 1

    def apply(self, change: CountChange) -> None:
        if change.oldest_ms is not None:
            self.oldest_ms = min(self.oldest_ms or change.oldest_ms, change.oldest_ms)
        self.total += change.total
        for window, joined in change.windows.items():
            active = self.windows.get(window, 0) + joined
            if active:
                self.windows[window] = active
            else:
                self.windows.pop(window, None)

    def copy(self) -> TenantCounts:
        return TenantCounts(dict(self.windows), self.total, self.cut_id, self.seq, self.oldest_ms)


class PartitionCounters:
    """The derived counters of the learner partitions this worker owns.

    Kept in memory because they are small (tenants x windows) and rebuilt from RocksDB when
    partitions are assigned. They change only once a change is durable, and every change marks
    the tenant dirty; a timer reports dirty tenants as absolute partial counts. A report lost in
    a crash is repaired by the rebuild of the next owner, which reports every tenant of the
    partition under a higher epoch.
    """

    def __init__(self) -> None:
        self._counts: dict[int, dict[str, TenantCounts]] = {}
        self._dirty: set[tuple[int, str]] = set()
        # (partition, tenant) whose reports wait: a physical deletion part is removing its
        # attempts there (`hold_reports`)
        self._held: set[tuple[int, str]] = set()
        # partition -> the owner epoch of its counters ([takeover counter, generation])
        self.epochs: dict[int, tuple[int, int]] = {}
        # what the forecast and the advisor read (streams/domain/tallies.py), per partition and
        # tenant, and when each partition was rebuilt: windows ending later are tallied
        self._tallies: dict[int, dict[str, Tallies]] = {}
        self.tracked_from: dict[int, float] = {}

    def tenant(self, partition: int, tenant_id: str, cut_id: str) -> TenantCounts:
        tenants = self._counts.setdefault(partition, {})
        counts = tenants.get(tenant_id)
        if counts is None:
            counts = tenants[tenant_id] = TenantCounts(cut_id=cut_id)
        return counts

    def tallies(self, partition: int, tenant_id: str) -> Tallies:
        tenants = self._tallies.setdefault(partition, {})
        tallies = tenants.get(tenant_id)
        if tallies is None:
            tallies = tenants[tenant_id] = Tallies(self.tracked_from.get(partition, 0.0))
        return tallies

    def tallies_if_any(self, partition: int, tenant_id: str) -> Tallies | None:
        return self._tallies.get(partition, {}).get(tenant_id)

    def get(self, partition: int, tenant_id: str) -> TenantCounts | None:
        return self._counts.get(partition, {}).get(tenant_id)

    def apply(
        self, partition: int, tenant_id: str, cut_id: str, change: CountChange, seq: int
    ) -> None:
        if change.tallies:
            self.tallies(partition, tenant_id).apply(change.tallies)
        if not change.counts_changed:
            return  # the counts are as reported: no report
        counts = self.tenant(partition, tenant_id, cut_id)
        counts.apply(change)
        counts.seq = max(counts.seq, seq)
        self._dirty.add((partition, tenant_id))

    def touch(self, partition: int, tenant_id: str, cut_id: str, seq: int) -> None:
        """Report the tenant's counts again (a license applied, a tenant first seen)."""
        counts = self.tenant(partition, tenant_id, cut_id)
        counts.seq = max(counts.seq, seq)
        self._dirty.add((partition, tenant_id))

    def replace(
        self, partition: int, tenant_id: str, counts: TenantCounts, tallies: Tallies
    ) -> None:
        self._counts.setdefault(partition, {})[tenant_id] = counts
        if tallies.windows or tallies.months:
            self._tallies.setdefault(partition, {})[tenant_id] = tallies
        else:
            # a license reaches every partition, most tenants have learners in few: an empty
            # tally is what `tallies_if_any` answers for a tenant without one (10,000 licenses
            # made 120,000 of them, 21 MB)
            self._tallies.get(partition, {}).pop(tenant_id, None)
        self._dirty.add((partition, tenant_id))

    def reset_partition(
        self,
        partition: int,
        epoch: tuple[int, int],
        tenants: Mapping[str, TenantCounts],
        tallies: Mapping[str, Tallies] | None = None,
        tracked_from: float = 0.0,
    ) -> None:
        self._counts[partition] = dict(tenants)
        self._tallies[partition] = dict(tallies or {})
        self.epochs[partition] = epoch
        self.tracked_from[partition] = tracked_from
        self._dirty.update((partition, tenant_id) for tenant_id in tenants)
        self._held = {(p, t) for p, t in self._held if p != partition}

    def drop_partitions(self, keep: Iterable[int]) -> None:
        keep = set(keep)
        for partition in [p for p in {*self._counts, *self._tallies} if p not in keep]:
            self._counts.pop(partition, None)
            self.epochs.pop(partition, None)
            self._tallies.pop(partition, None)
            self.tracked_from.pop(partition, None)
        self._dirty = {(p, t) for p, t in self._dirty if p in keep}
        self._held = {(p, t) for p, t in self._held if p in keep}

    def partitions(self) -> set[int]:
        return set(self._counts)

    def take_dirty(self, hold: set[int] | None = None) -> list[tuple[int, str, TenantCounts]]:
        """The dirty tenants with a copy of their counts; they are clean afterwards. Tenants of
        partitions in `hold` stay dirty (reported later)."""
        held = hold or set()
        dirty = {(p, t) for p, t in self._dirty if p not in held and (p, t) not in self._held}
        self._dirty -= dirty
        out = []
        for partition, tenant_id in sorted(dirty):
            counts = self._counts.get(partition, {}).get(tenant_id)
            if counts is not None:
                out.append((partition, tenant_id, counts.copy()))
                counts.oldest_ms = None  # reported
        return out

    def hold_reports(self, partition: int, tenant_id: str) -> None:
        """A tenant's reports of a partition wait (`take_dirty`) while a physical deletion part
        removes its attempts there: the part's chunks change the counts one at a time, all
        under the part's offset as `seq`, so a report taken between two of them ties with the
        part's final report, and landing after it (a send retried) it overwrote the final count
        with a higher one. The part's own report carries the count. Held until the part is
        done or given up (a try that failed changed the counts already) or the partition is
        let go or rebuilt."""
        self._held.add((partition, tenant_id))

    def release_reports(self, partition: int, tenant_id: str) -> None:
        self._held.discard((partition, tenant_id))

    def untake(self, partition: int, tenant_id: str, oldest_ms: int | None) -> None:
        """A tenant `take_dirty` gave whose report was not sent (the timer's flush failed): it
        is dirty again, with the oldest launch it carried, so the next report sends its counts
        (as they are then). Nothing for a partition let go meanwhile."""
        counts = self._counts.get(partition, {}).get(tenant_id)
        if counts is None:
            return
        if oldest_ms is not None:
            counts.oldest_ms = min(counts.oldest_ms or oldest_ms, oldest_ms)
        self._dirty.add((partition, tenant_id))
