"""Learner-stage transitions: attempts, window membership and the partition's derived counters.

State per learner (key `tenant/learner`): `{window start date: attempts in that window}` under the
tenant's current cut. A learner is active in a window when its count there is above 0, and counts
towards Total Learners when it has any attempt at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from streams.domain.windows import Cut, window_of

Membership = dict[str, int]  # window start date (ISO) -> attempts of the learner in it


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


@dataclass(frozen=True)
class MembershipChange:
    membership: Membership
    window: str
    joined_window: bool  # the learner's first attempt in this window
    joined_tenant: bool  # the learner's first attempt at all


def add_attempt(membership: Mapping[str, int], cut: Cut, launched_at: datetime) -> MembershipChange:
    window = window_of(cut, launched_at).start.isoformat()
    updated = dict(membership)
    before = updated.get(window, 0)
    updated[window] = before + 1
    return MembershipChange(
        membership=updated,
        window=window,
        joined_window=before == 0,
        joined_tenant=not any(membership.values()),
    )


def membership_of(cut: Cut, launch_instants: Iterable[datetime]) -> Membership:
    """A learner's membership recomputed from its attempts (after a license re-cut)."""
    membership: Membership = {}
    for instant in launch_instants:
        window = window_of(cut, instant).start.isoformat()
        membership[window] = membership.get(window, 0) + 1
    return membership


@dataclass
class TenantCounts:
    """Active learners per window and total learners of one tenant in one partition."""

    windows: dict[str, int] = field(default_factory=dict)
    total: int = 0
    cut_id: str = ""
    seq: int = -1  # offset of the last command of this tenant applied in the partition

    def add_learner(self, membership: Mapping[str, int]) -> None:
        if not any(membership.values()):
            return
        self.total += 1
        for window, attempts in membership.items():
            if attempts > 0:
                self.windows[window] = self.windows.get(window, 0) + 1


class PartitionCounters:
    """The derived counters of the learner partitions this worker owns.

    Kept in memory because they are small (tenants x windows) and rebuilt from RocksDB when
    partitions are assigned. Every change marks the tenant dirty; a timer flushes dirty tenants
    as absolute partial counts. A flush lost in a crash is repaired by the rebuild of the next
    owner, which reports every tenant of the partition under a new epoch.
    """

    def __init__(self) -> None:
        self._counts: dict[int, dict[str, TenantCounts]] = {}
        self._dirty: set[tuple[int, str]] = set()

    def tenant(self, partition: int, tenant_id: str, cut_id: str) -> TenantCounts:
        tenants = self._counts.setdefault(partition, {})
        counts = tenants.get(tenant_id)
        if counts is None:
            counts = tenants[tenant_id] = TenantCounts(cut_id=cut_id)
        return counts

    def at_offset(self, partition: int, tenant_id: str, cut_id: str, seq: int) -> TenantCounts:
        """The tenant's counts, stamped with the offset of the command being applied."""
        counts = self.tenant(partition, tenant_id, cut_id)
        counts.seq = max(counts.seq, seq)
        return counts

    def mark_dirty(self, partition: int, tenant_id: str) -> None:
        """The tenant's counts changed: the next flush reports them."""
        self._dirty.add((partition, tenant_id))

    def replace(self, partition: int, tenant_id: str, counts: TenantCounts) -> None:
        self._counts.setdefault(partition, {})[tenant_id] = counts
        self._dirty.add((partition, tenant_id))

    def reset_partition(self, partition: int, tenants: Mapping[str, TenantCounts]) -> None:
        self._counts[partition] = dict(tenants)
        self._dirty.update((partition, tenant_id) for tenant_id in tenants)

    def drop_partitions(self, keep: Iterable[int]) -> None:
        keep = set(keep)
        for partition in [p for p in self._counts if p not in keep]:
            del self._counts[partition]
        self._dirty = {(p, t) for p, t in self._dirty if p in keep}

    def partitions(self) -> set[int]:
        return set(self._counts)

    def take_dirty(self) -> list[tuple[int, str, TenantCounts]]:
        """The dirty tenants with a copy of their counts; they are clean afterwards."""
        dirty, self._dirty = self._dirty, set()
        out = []
        for partition, tenant_id in sorted(dirty):
            counts = self._counts.get(partition, {}).get(tenant_id)
            if counts is not None:
                out.append(
                    (
                        partition,
                        tenant_id,
                        TenantCounts(dict(counts.windows), counts.total, counts.cut_id, counts.seq),
                    )
                )
        return out
