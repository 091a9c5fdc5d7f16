"""Learner stage, markers: what a learner partition remembers about launches it must not count
(streams/stages/keys.py, the `erasures` table): erased attempts, learners and tenants (a launch
that arrives after the physical deletion that named it is erased too), logically deleted ones,
and launches once rejected as conflicts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from streams.domain.learners import Erasures, TrackedAttempt
from streams.stages import keys
from streams.stages.store import Batch

MAX_CONFLICTS_KEPT = 100  # rejected launches remembered per attempt


def erasures_reader(
    batch: Batch, partition: int, items: Sequence[TrackedAttempt], tenants: Sequence[str]
) -> Callable[[TrackedAttempt], Erasures] | None:
    """The markers of a batch's launches, read at once; None when no tenant of the batch has
    any marker in this partition (most have none: one seek each)."""
    marked = {
        tenant_id
        for tenant_id in tenants
        if batch.scan(keys.ERASURES, partition, keys.erasures_of(tenant_id), limit=1)
    }
    if not marked:
        return None
    wanted: dict[bytes, None] = {}
    for item in items:
        if item.tenant_id in marked:
            for key in (
                keys.attempt_marker(*item.attempt),
                keys.learner_cutoff(*item.learner),
                keys.attempt_hidden(*item.attempt),
                keys.learner_hidden(*item.learner),
                keys.conflicts(*item.attempt),
            ):
                wanted[key] = None
    for tenant_id in marked:
        wanted[keys.tenant_cutoff(tenant_id)] = None
        wanted[keys.tenant_hidden(tenant_id)] = None
    wanted_keys = list(wanted)
    found = dict(
        zip(wanted_keys, batch.get_many(keys.ERASURES, partition, wanted_keys), strict=True)
    )

    def instant(key: bytes) -> datetime | None:
        value = found.get(key)
        return datetime.fromisoformat(value) if isinstance(value, str) else None

    def erasures(item: TrackedAttempt) -> Erasures:
        if item.tenant_id not in marked:
            return Erasures()
        rejected = found.get(keys.conflicts(*item.attempt)) or []
        return Erasures(
            attempt_cutoff=instant(keys.attempt_marker(*item.attempt)),
            learner_cutoff=instant(keys.learner_cutoff(*item.learner)),
            tenant_cutoff=instant(keys.tenant_cutoff(item.tenant_id)),
            attempt_hidden=instant(keys.attempt_hidden(*item.attempt)),
            learner_hidden=instant(keys.learner_hidden(*item.learner)),
            tenant_hidden=instant(keys.tenant_hidden(item.tenant_id)),
            rejected=frozenset((element, datetime.fromisoformat(at)) for at, element in rejected),
        )

    return erasures


def remember_conflicts(batch: Batch, partition: int, items: Sequence[TrackedAttempt]) -> None:
    """Launches rejected as conflicts, kept per attempt so that a redelivery (or a replay that
    finds the stored attempt deleted meanwhile) rejects them again."""
    for item in items:
        key = keys.conflicts(*item.attempt)
        known = batch.get(keys.ERASURES, partition, key) or []
        if any(
            element == item.element_id and datetime.fromisoformat(at) == item.launched_at
            for at, element in known
        ):
            continue
        if len(known) < MAX_CONFLICTS_KEPT:
            batch.put(
                keys.ERASURES, partition, key, [*known, [item.launched_at_text, item.element_id]]
            )
