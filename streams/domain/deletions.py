"""Deleting attempt records: which attempts a request selects, erasure markers, receipts.

A request selects attempts of one tenant in exactly one way:
  attempts     these (learner, attempt) pairs
  learner_ids  every attempt of these learners launched before `requested_at`
  older_than   every attempt of the tenant launched before the cut-off
Per-learner selections run in the learner's partition; `older_than` runs in every partition,
each over the tenant's attempts it holds. Each such part reports to the tenant stage, which
assembles one receipt when all parts are in.

A physical deletion leaves erasure markers, so that a replayed or late launch it covered is
dead-lettered `erased` and never counted again. Each marker is a cut-off instant that only ever
moves forward:
  an attempt marker     launches of that attempt before it: for good (`REMOVED_FOR_GOOD`) for
                        every attempt a physical deletion removed, whatever its selector (a
                        repeat of a removed attempt is erased, whenever launched); `requested_at`
                        for a named attempt that was not found (also one whose launch arrives
                        only later); for a logical deletion's found attempt, just after its
                        `launched_at` when that was later
  a learner cut-off     any attempt of the learner launched before it
  a tenant cut-off      any attempt of the tenant launched before it (per partition)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.domain.selectors import Selector
from streams.domain.tallies import Membership, months_in, summarised
from streams.domain.windows import Cut

AttemptKey = tuple[str, str]  # (learner_id, attempt_id)


@dataclass(frozen=True)
class PartSelector:
    """What one part of a request selects among the attempts of its partition.

    `attempts` selects the named attempts whatever their time (the first application of a
    part); `attempt_cutoffs` selects a named attempt's records launched before its marker's
    cut-off (every later run: an attempt launched again after the deletion is not the one
    that was named; a physically removed one's cut-off is for good, so none is stored again)."""

    attempts: frozenset[AttemptKey] | None = None
    attempt_cutoffs: Mapping[AttemptKey, datetime] | None = None
    learners_before: datetime | None = None  # with learner_ids: launched before requested_at
    learner_ids: frozenset[str] | None = None
    older_than: datetime | None = None

    def selects(self, learner_id: str, attempt_id: str, launched_at: datetime) -> bool:
        if self.attempts is not None:
            return (learner_id, attempt_id) in self.attempts
        if self.attempt_cutoffs is not None:
            cutoff = self.attempt_cutoffs.get((learner_id, attempt_id))
            return cutoff is not None and launched_at < cutoff
        if self.learner_ids is not None:
            assert self.learners_before is not None
            return learner_id in self.learner_ids and launched_at < self.learners_before
        assert self.older_than is not None
        return launched_at < self.older_than


@dataclass(frozen=True)
class Erasures:
    """The markers that may cover one launch of an attempt.

    Erasure cut-offs (physical deletions): a covered launch is erased. Hiding cut-offs (logical
    deletions): a covered launch is stored logically deleted. `rejected`: launches of this
    attempt once dead-lettered as a conflict, (element, launched_at) each: the same launch,
    delivered again after the stored attempt was deleted, is a conflict again (so a redelivery
    or a replay decides as the first delivery did).
    """

    attempt_cutoff: datetime | None = None
    learner_cutoff: datetime | None = None
    tenant_cutoff: datetime | None = None
    attempt_hidden: datetime | None = None
    learner_hidden: datetime | None = None
    tenant_hidden: datetime | None = None
    rejected: frozenset[tuple[str, datetime]] = frozenset()


REUSED_ID = "was already used for another request"


def reused_id_error(request_id: str) -> str:
    """The error of a request under a request id its tenant used for another request."""
    return f"request_id {request_id!r} {REUSED_ID}"


def is_reused_id_receipt(receipt: dict[str, Any]) -> bool:
    """The error receipt of such a request: it never stands for the request that owns the id."""
    return REUSED_ID in (receipt.get("error") or "")


def hidden_by(markers: Erasures, launched_at: datetime) -> bool:
    """Whether a logical deletion covers a launch (it is stored logically deleted)."""
    return any(
        cutoff is not None and launched_at < cutoff
        for cutoff in (markers.attempt_hidden, markers.learner_hidden, markers.tenant_hidden)
    )


def erasure_of(markers: Erasures, launched_at: datetime) -> str | None:
    """Why a launch is erased (a detail for its dead letter), or None if it may count."""
    if markers.attempt_cutoff is not None and launched_at < markers.attempt_cutoff:
        return "this attempt was physically deleted"
    if markers.learner_cutoff is not None and launched_at < markers.learner_cutoff:
        return (
            f"the learner's attempts before {markers.learner_cutoff.isoformat()} were "
            "physically deleted"
        )
    if markers.tenant_cutoff is not None and launched_at < markers.tenant_cutoff:
        return (
            f"the tenant's attempts before {markers.tenant_cutoff.isoformat()} were "
            "physically deleted"
        )
    return None


# The cut-off of an attempt a physical deletion removed: every later launch of it is erased,
# whenever it was launched ("a later launch that repeats a removed attempt ... is dead-lettered
# as `erased`, never counted again": a repeat is any launch of the same tenant, learner and
# attempt id). The last instant a datetime holds: no launch reaches it.
REMOVED_FOR_GOOD = datetime.max.replace(tzinfo=UTC)


def attempt_cutoff(
    requested_at: datetime, deleted_at: datetime | None, physical: bool = False
) -> datetime:
    """The cut-off of an attempt marker: launches of the attempt before it are erased (or, for a
    logical deletion, stored logically deleted). `deleted_at`: the launch of the stored attempt
    the part found, if any; a physically removed one is erased for good."""
    if deleted_at is not None and physical:
        return REMOVED_FOR_GOOD
    if deleted_at is not None and deleted_at >= requested_at:
        return deleted_at + timedelta(microseconds=1)
    return requested_at


def later(current: str | None, candidate: datetime) -> str:
    """A cut-off marker only ever moves forward: keep the later of the stored and the new one."""
    if current is not None and datetime.fromisoformat(current) >= candidate:
        return current
    return candidate.isoformat()


@dataclass(frozen=True)
class LearnerRemoval:
    """What removing the selected attempts of one learner does to its membership and counts."""

    removed: tuple[bytes, ...]  # keys of the attempts removed
    windows: tuple[str, ...]  # the learner's windows afterwards (from the attempts that remain)
    window_changes: dict[str, int]  # -1 where the learner leaves a window (+1 heals a lost entry)
    total_change: int  # -1 when no attempt of the learner remains
    # the membership afterwards, with its summaries, and whether it differs from the stored one
    membership: Membership = field(default_factory=dict)
    rewrite: bool = False
    removed_at: tuple[float, ...] = ()  # the instants of the attempts removed (epoch seconds)

    @property
    def membership_changed(self) -> bool:
        return bool(self.window_changes) or self.total_change != 0 or self.rewrite


def remove_attempts(
    stored: Membership | Iterable[str],
    attempts: Iterable[tuple[bytes, str, str, datetime]],
    selector: PartSelector,
    cut: Cut,
) -> LearnerRemoval:
    """Apply `selector` to one learner's attempts `(key, learner, attempt, launched_at)`.

    The membership afterwards is recomputed from the attempts that remain, whether anything was
    selected or not: where the stored one drifted (a deletion whose tombstones became durable
    before the membership did, then a crash), it is healed. A stored summary that still holds
    (the same first attempt, a `last` of the last attempt's month: streams/domain/tallies.py)
    is kept, so that a learner the deletion leaves alone is not rewritten.
    """
    before: Membership = stored if isinstance(stored, dict) else dict.fromkeys(stored)
    removed: list[bytes] = []
    removed_at: list[float] = []
    kept: list[datetime] = []
    for key, learner_id, attempt_id, launched_at in attempts:
        if selector.selects(learner_id, attempt_id, launched_at):
            removed.append(key)
            removed_at.append(launched_at.timestamp())
        else:
            kept.append(launched_at)
    month_of = months_in(cut.timezone)
    after: Membership = {}
    for window, (first, last) in sorted(summarised(cut, kept).items()):
        old = before.get(window)
        still_true = (
            old is not None
            and old[0] == first
            and first <= old[1] <= last
            and month_of(old[1]) == month_of(last)
        )
        after[window] = old if still_true else [first, last]
    changes = {w: -1 for w in before.keys() - after.keys()}
    changes.update({w: 1 for w in after.keys() - before.keys()})
    return LearnerRemoval(
        removed=tuple(removed),
        windows=tuple(after),
        window_changes=changes,
        total_change=int(bool(after)) - int(bool(before)),
        membership=after,
        rewrite=after != before,
        removed_at=tuple(removed_at),
    )


@dataclass
class PartReport:
    """One part's outcome in its partition: attempts and learners it affected, the learners
    leaving each window, and the tenant's active learners per window before the part ran."""

    attempts_affected: int = 0
    learners_affected: int = 0
    losses: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "attempts_affected": self.attempts_affected,
            "learners_affected": self.learners_affected,
            "losses": dict(self.losses),
            "counts": dict(self.counts),
        }


def assemble_receipt_windows(
    parts: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, int | str]]:
    """Per window that loses learners: the tenant's active learners before and after.

    Every learner partition runs at least one part of a request, and reports its counts as they
    were before its first part; parts of one partition run one after another on distinct
    learners, so their losses add up. The receipt is a function of the parts alone: a replay
    computes the identical one.
    """
    first: dict[int, int] = {}
    for number, report in parts.items():
        partition = int(report["partition"])
        if partition not in first or int(number) < first[partition]:
            first[partition] = int(number)
    before: dict[str, int] = {}
    for first_part in first.values():
        for window, active in parts[str(first_part)]["counts"].items():
            before[window] = before.get(window, 0) + int(active)
    lost: dict[str, int] = {}
    for report in parts.values():
        for window, n in report["losses"].items():
            lost[window] = lost.get(window, 0) + int(n)
    return [
        {
            "start": window,
            "active_before": before.get(window, 0),
            "active_after": before.get(window, 0) - n,
        }
        for window, n in sorted(lost.items())
        if n > 0
    ]


def build_request(
    tenant_id: str,
    mode: str,
    selector: Selector,
    now: datetime,
    requested_by: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """A deletion request as the contract writes it, under a new request id (CLI, bench, soak);
    `requested_by` and `reason` go into its receipt, the audit trail."""
    request = {
        "request_id": f"cli-{uuid.uuid4().hex}",
        "tenant_id": tenant_id,
        "mode": mode,
        "requested_at": now.isoformat(),
        **selector.request_fields(),
    }
    if requested_by is not None:
        request["requested_by"] = requested_by
    if reason is not None:
        request["reason"] = reason
    return request
