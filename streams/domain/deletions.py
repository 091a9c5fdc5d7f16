"""Deleting attempt records: which attempts a request selects, erasure markers, receipts.

A request selects attempts of one tenant in exactly one way:
  attempts     these (learner, attempt) pairs
  learner_ids  every attempt of these learners launched before `requested_at`
  older_than   every attempt of the tenant launched before the cut-off
Per-learner selections run in the learner's partition; `older_than` runs in every partition,
each over the tenant's attempts it holds. Each such part reports to the tenant stage, which
assembles one receipt when all parts are in.

A physical deletion leaves erasure markers, so that a replayed or late launch it covered is
dead-lettered `erased` and never counted again:
  an attempt marker     the attempt itself
  a learner cut-off     any attempt of the learner launched before it
  a tenant cut-off      any attempt of the tenant launched before it (per partition)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streams.domain.windows import Cut, window_of

AttemptKey = tuple[str, str]  # (learner_id, attempt_id)


@dataclass(frozen=True)
class PartSelector:
    """What one part of a request selects among the attempts of its partition."""

    attempts: frozenset[AttemptKey] | None = None
    learners_before: datetime | None = None  # with learner_ids: launched before requested_at
    learner_ids: frozenset[str] | None = None
    older_than: datetime | None = None

    def selects(self, learner_id: str, attempt_id: str, launched_at: datetime) -> bool:
        if self.attempts is not None:
            return (learner_id, attempt_id) in self.attempts
        if self.learner_ids is not None:
            assert self.learners_before is not None
            return learner_id in self.learner_ids and launched_at < self.learners_before
        assert self.older_than is not None
        return launched_at < self.older_than


@dataclass(frozen=True)
class Erasures:
    """The erasure markers that may cover one launch."""

    attempt_erased: bool = False
    learner_cutoff: datetime | None = None
    tenant_cutoff: datetime | None = None


def erasure_of(markers: Erasures, launched_at: datetime) -> str | None:
    """Why a launch is erased (a detail for its dead letter), or None if it may count."""
    if markers.attempt_erased:
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


def remove_attempts(
    stored_windows: Iterable[str],
    attempts: Iterable[tuple[bytes, str, str, datetime]],
    selector: PartSelector,
    cut: Cut,
) -> LearnerRemoval | None:
    """Apply `selector` to one learner's attempts `(key, learner, attempt, launched_at)`.

    None when it selects nothing. The membership afterwards is recomputed from the attempts that
    remain, so it is right even where the stored one had drifted.
    """
    removed: list[bytes] = []
    remaining: set[str] = set()
    for key, learner_id, attempt_id, launched_at in attempts:
        if selector.selects(learner_id, attempt_id, launched_at):
            removed.append(key)
        else:
            remaining.add(window_of(cut, launched_at).start.isoformat())
    if not removed:
        return None
    before = set(stored_windows)
    changes = {w: -1 for w in before - remaining}
    changes.update({w: 1 for w in remaining - before})
    return LearnerRemoval(
        removed=tuple(removed),
        windows=tuple(sorted(remaining)),
        window_changes=changes,
        total_change=int(bool(remaining)) - int(bool(before)),
    )


@dataclass
class PartReport:
    """One part's outcome: attempts and learners it affected and active learners lost per window.

    `windows` maps a window start to (active before, active after) *in that partition*.
    """

    attempts_affected: int = 0
    learners_affected: int = 0
    windows: dict[str, tuple[int, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "attempts_affected": self.attempts_affected,
            "learners_affected": self.learners_affected,
            "windows": {w: list(v) for w, v in self.windows.items()},
        }


def assemble_receipt_windows(
    parts: Mapping[str, Mapping[str, Any]],
    partitions_of_parts: Mapping[str, int],
    stored_partials: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, int | str]]:
    """Per changed window: the tenant's active learners before and after the request.

    Before = for every learner partition, its count before the first part that ran there (or
    its stored partial count, when no part ran there); after = before minus the learners each
    part removed. Parts of one partition run one after another on distinct learners, so their
    losses add up.
    """
    first_before: dict[int, dict[str, int]] = {}
    lost: dict[str, int] = {}
    for part_id in sorted(parts, key=int):
        partition = partitions_of_parts[part_id]
        for window, (before, after) in parts[part_id]["windows"].items():
            first_before.setdefault(partition, {}).setdefault(window, before)
            lost[window] = lost.get(window, 0) + (before - after)
    out: list[dict[str, int | str]] = []
    for window in sorted(w for w, n in lost.items() if n > 0):
        before = 0
        for partition_text, partial in stored_partials.items():
            partition = int(partition_text)
            if partition in first_before and window in first_before[partition]:
                before += first_before[partition][window]
            else:
                before += int(partial["windows"].get(window, 0))
        for partition, windows in first_before.items():
            if str(partition) not in stored_partials and window in windows:
                before += windows[window]
        out.append(
            {"start": window, "active_before": before, "active_after": before - lost[window]}
        )
    return out
