"""Learner stage, deletions: one part of a deletion request applied to this partition's attempts.

Physical: attempts are deleted (a tombstone on the `attempts` topic each), memberships and the
partition's counters drop, and erasure markers make covered launches dead-letter as `erased`.
Logical: attempts are marked `logically_deleted`; counts do not change. Preview: the same
selection and arithmetic as physical, and nothing is written.

Every part's outcome is stored under `done/{request}/{part}`: a redelivered part (a replay, or the
same request sent twice) reports that stored outcome again instead of deleting twice.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from streams.domain.deletions import (
    Erasures,
    PartReport,
    PartSelector,
    later,
    remove_from_membership,
)
from streams.domain.windows import window_of
from streams.licensing import cut_of
from streams.partition_scan import scan_prefix
from streams.tables import attempts, erasures, learner_licenses, learner_state

if TYPE_CHECKING:
    from streams.agents.learners import LearnerStage


def markers_for(tenant_id: str, learner_id: str, attempt_id: str) -> Erasures:
    learner_cutoff = erasures.get(f"l/{tenant_id}/{learner_id}".encode())
    tenant_cutoff = erasures.get(f"t/{tenant_id}".encode())
    return Erasures(
        attempt_erased=erasures.get(f"a/{tenant_id}/{learner_id}/{attempt_id}".encode())
        is not None,
        learner_cutoff=datetime.fromisoformat(learner_cutoff) if learner_cutoff else None,
        tenant_cutoff=datetime.fromisoformat(tenant_cutoff) if tenant_cutoff else None,
    )


def selector_of(command: dict[str, Any]) -> PartSelector:
    selector = command["selector"]
    if "attempts" in selector:
        return PartSelector(
            attempts=frozenset((learner, attempt) for learner, attempt in selector["attempts"])
        )
    if "learner_ids" in selector:
        return PartSelector(
            learner_ids=frozenset(selector["learner_ids"]),
            learners_before=datetime.fromisoformat(selector["before"]),
        )
    return PartSelector(older_than=datetime.fromisoformat(selector["older_than"]))


def scan_prefix_of(tenant_id: str, command: dict[str, Any]) -> bytes:
    """Per-learner parts read only that learner's attempts; tenant-wide parts the tenant's."""
    learner = command.get("learner_id")
    return f"{tenant_id}/{learner}/".encode() if learner else f"{tenant_id}/".encode()


def apply_part(
    stage: LearnerStage, command: dict[str, Any], partition: int, offset: int
) -> dict[str, Any]:
    """Apply (or, for a redelivery, recall) one part; returns its report for the tenant stage."""
    request = command["request"]
    mode = request["mode"]
    done_key = f"done/{request['request_id']}/{command['part']}".encode()
    done = erasures.get(done_key)
    if done is None:
        done = execute(stage, command, partition, offset).as_dict()
    erasures[done_key] = done  # rewritten on a replay, in case its changelog record was lost
    if mode == "physical":
        write_cutoffs(request, command)
    return done


def execute(
    stage: LearnerStage, command: dict[str, Any], partition: int, offset: int
) -> PartReport:
    request = command["request"]
    tenant_id, mode = request["tenant_id"], request["mode"]
    selector = selector_of(command)
    cut = cut_of(learner_licenses.get(tenant_id.encode()))

    removed: dict[str, list[tuple[bytes, dict[str, Any]]]] = defaultdict(list)
    for key, record in scan_prefix(attempts, partition, scan_prefix_of(tenant_id, command)):
        launched_at = datetime.fromisoformat(record["launched_at"])
        if selector.selects(record["learner_id"], record["attempt_id"], launched_at):
            removed[record["learner_id"]].append((key, record))

    report = PartReport(
        attempts_affected=sum(len(rows) for rows in removed.values()),
        learners_affected=len(removed),
    )
    if mode == "logical":
        for rows in removed.values():
            for key, record in rows:
                if not record.get("logically_deleted"):
                    attempts[key] = {**record, "logically_deleted": True}
        return report

    counts = stage.counters.at_offset(partition, tenant_id, cut.id, offset)
    lost: dict[str, int] = defaultdict(int)
    learners_gone = 0
    for learner_id, rows in removed.items():
        learner_key = f"{tenant_id}/{learner_id}".encode()
        windows = [
            window_of(cut, datetime.fromisoformat(record["launched_at"])).start.isoformat()
            for _, record in rows
        ]
        removal = remove_from_membership(learner_state.get(learner_key) or {}, windows)
        for window in removal.windows_left:
            lost[window] += 1
        learners_gone += removal.left_tenant
        if mode != "physical":
            continue
        for key, record in rows:
            del attempts[key]  # the tombstone on the compacted `attempts` topic
            if "attempts" in command["selector"]:
                erasures[f"a/{tenant_id}/{learner_id}/{record['attempt_id']}".encode()] = 1
        if removal.membership:
            learner_state[learner_key] = removal.membership
        else:
            del learner_state[learner_key]

    for window, n in lost.items():
        before = counts.windows.get(window, 0)
        report.windows[window] = (before, before - n)
    if mode == "physical" and (lost or learners_gone):
        for window, n in lost.items():
            counts.windows[window] = counts.windows.get(window, 0) - n
        counts.total -= learners_gone
        stage.counters.mark_dirty(partition, tenant_id)
    return report


def write_cutoffs(request: dict[str, Any], command: dict[str, Any]) -> None:
    """The learner and tenant cut-offs of an executed physical deletion (they only move forward)."""
    tenant_id = request["tenant_id"]
    selector = command["selector"]
    if "learner_ids" in selector:
        before = datetime.fromisoformat(selector["before"])
        for learner_id in selector["learner_ids"]:
            key = f"l/{tenant_id}/{learner_id}".encode()
            erasures[key] = later(erasures.get(key), before)
    elif "older_than" in selector:
        key = f"t/{tenant_id}".encode()
        erasures[key] = later(erasures.get(key), datetime.fromisoformat(selector["older_than"]))
