"""Tenant-stage transitions: summing partial counts and deciding which count records to publish.

Each learner partition p reports, per tenant, absolute counts `(epoch, seq, cut, windows, total)`.
The latest report per (tenant, p) wins; `epoch` grows each time p's counters are rebuilt (it is
stored in p's changelog, so it grows across workers), `seq` is the offset of the last command
applied. A replay overwrites a report with the same values, so the sums are exact under
at-least-once delivery.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from streams.domain.windows import Cut, Window, window_of, window_starting

Partial = Mapping[str, Any]  # {"epoch": [counter, generation], "seq", "cut", "windows", "total"}
Published = dict[str, list[int]]  # window start -> [active, total] last published


def newer_partial(stored: Partial | None, incoming: Partial) -> bool:
    """Whether `incoming` replaces `stored`: a later (epoch, seq), or the same one again."""
    if stored is None:
        return True
    return (list(incoming["epoch"]), incoming["seq"]) >= (list(stored["epoch"]), stored["seq"])


def merge_partials(
    stored: Mapping[str, Partial], incoming: Mapping[str, Partial]
) -> dict[str, Partial]:
    """The stored partials per learner partition, updated with the newer incoming ones."""
    merged = dict(stored)
    for partition, partial in incoming.items():
        if newer_partial(merged.get(partition), partial):
            merged[partition] = partial
    return merged


@dataclass(frozen=True)
class TenantSums:
    windows: dict[str, int]
    total: int


def sum_partials(partials: Iterable[Partial], cut: Cut) -> TenantSums:
    """Active learners per window (from partitions already on `cut`) and total learners.

    A partition that has not yet applied the tenant's latest license reports windows of the old
    cut; they are left out until it catches up (it reports again once it has re-cut).
    """
    windows: dict[str, int] = {}
    total = 0
    for partial in partials:
        total += int(partial["total"])
        if partial["cut"] != cut.id:
            continue
        for start, active in partial["windows"].items():
            windows[start] = windows.get(start, 0) + int(active)
    return TenantSums(windows, total)


def publication_ready(
    partials: Mapping[str, Partial], cut: Cut, partitions: int, licensed: bool
) -> bool:
    """Whether the partial counts add up to exact counts under `cut`.

    A license that changes the windows is applied by each learner partition in its own time.
    Until every partition reports on the tenant's current cut, the sums would mix windows of two
    cuts or miss learners, so the tenant stage keeps the last exact records. That holds for every
    license change, also one that returns to an earlier cut (A -> B -> A): a partition that last
    reported on B is not on A yet, whatever was published before.

    Every learner partition receives every license and reports on it, so for a tenant that has
    had a license (`licensed`: even one since removed) all of them must have reported. An
    unlicensed tenant is reported only by the partitions that hold its learners.
    """
    if any(partial["cut"] != cut.id for partial in partials.values()):
        return False
    if licensed:
        return {int(p) for p in partials} >= set(range(partitions))
    return True


@dataclass(frozen=True)
class CountUpdate:
    window: Window
    active: int
    total: int


@dataclass(frozen=True)
class PublishPlan:
    updates: tuple[CountUpdate, ...]
    tombstones: tuple[str, ...]  # window starts whose records are deleted
    published: Published

    @property
    def changed(self) -> bool:
        return bool(self.updates or self.tombstones)


def plan_publication(
    cut: Cut,
    published: Mapping[str, list[int]],
    sums: TenantSums,
    now: datetime,
    republish: bool = False,
    exists: bool = True,
) -> PublishPlan:
    """Which count records to (re)publish so that every window's last record is exact.

    A window's record follows every change of its active count; the current window's record
    also follows changes of the total. The current window always has a record (0 before any
    launch). Records of windows that the cut no longer has are tombstoned. `republish` writes
    every record again (after a license change of limit or thresholds).

    A tenant that does not `exist` (no license, and no attempt left: its license was
    tombstoned, or a deletion removed its last attempt) has no records at all: the contract's
    "404 for a tenant with no license and no attempts", which the read model answers from the
    count topic. Every record it had is tombstoned (its total is 0, so is every window's count).
    """
    if not exists:
        return PublishPlan((), tuple(sorted(published)), {})
    current = window_of(cut, now)
    valid: dict[str, Window] = {}
    tombstones = []
    for start in published:
        window = window_starting(cut, date.fromisoformat(start))
        if window is None:
            tombstones.append(start)
        else:
            valid[start] = window
    for start in sums.windows:
        if start not in valid:
            window = window_starting(cut, date.fromisoformat(start))
            if window is not None:
                valid[start] = window
    valid.setdefault(current.start.isoformat(), current)

    updates = []
    new_published: Published = {}
    for start, window in sorted(valid.items()):
        active = sums.windows.get(start, 0)
        before = published.get(start)
        is_current = window.index == current.index
        if before is None:
            # First record of a window: only if it has learners or it is the current window.
            if active == 0 and not is_current:
                continue
            changed = True
        else:
            changed = republish or before[0] != active or (is_current and before[1] != sums.total)
        total = sums.total if changed else before[1]  # type: ignore[index]
        new_published[start] = [active, total]
        if changed:
            updates.append(CountUpdate(window, active, total))
    return PublishPlan(tuple(updates), tuple(sorted(tombstones)), new_published)


def utilization_pct(active: int, limit: int | None) -> float | None:
    """active / limit in %, cut (not rounded) to two decimals: 99,999 of 100,000 is 99.99, never
    a 100.0 that says the limit is reached when it is not."""
    if limit is None:
        return None
    return active * 10_000 // limit / 100


def threshold_learners(limit: int, pct: int) -> int:
    """ceil(limit x pct / 100), in integers so 0.1 + 0.2 never bites."""
    return -(-limit * pct // 100)


def count_record(
    tenant_id: str,
    update: CountUpdate,
    learner_limit: int | None,
    licensed: bool,
    now: datetime,
) -> dict[str, Any]:
    """The `active-learner-counts` value of one window (see schemas/counts.py)."""
    window = update.window
    return {
        "tenant_id": tenant_id,
        "window": {
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
            "months": window.months,
        },
        "active_learners": update.active,
        "total_learners": update.total,
        "learner_limit": learner_limit,
        "utilization_pct": utilization_pct(update.active, learner_limit),
        "licensed": licensed,
        "updated_at": now.isoformat(),
    }
