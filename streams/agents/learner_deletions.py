"""Learner stage, deletions: one part of a deletion request applied to this partition's attempts.

`teams` and `roles` select, in each partition, the learners whose stored groups (learner-groups)
name any of them when the part first runs; then the part works like `learner_ids` for them.

Physical: attempts are deleted (a tombstone on the `attempts` topic each), memberships and the
partition's counters drop, and erasure markers make covered launches dead-letter as `erased`.
Logical: attempts are marked `logically_deleted`; counts do not change. Preview: the same
selection and arithmetic as physical, and nothing is deleted.

A part first computes its outcome without writing (a read-only pass) and stores it under
`done/{tenant}/{request}/{part}` together with the erasure markers. Then it deletes (or marks)
in chunks of a few thousand attempts, each made durable before the next is read, so memory stays
flat however many attempts a part selects. A redelivered part (a replay after a crash, or the
same request sent again) reports the stored outcome and runs the deletion again: whatever a crash
left behind is deleted, what is gone stays gone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from streams.domain.deletions import PartReport, PartSelector, later, remove_attempts
from streams.domain.learners import (
    CountChange,
    attempt_marker_key,
    learner_cutoff_key,
    tenant_cutoff_key,
    windows_of,
)
from streams.domain.windows import Cut
from streams.licensing import cut_of
from streams.partition_scan import learner_of_key, scan_chunk, scan_prefix
from streams.state import StateBatch, db_of, decode
from streams.tables import attempts, erasures, learner_groups, learner_state

if TYPE_CHECKING:
    from streams.agents.learners import LearnerStage

CHUNK_ATTEMPTS = 5_000
GROUP_SELECTORS = {"teams", "roles"}

LearnerRows = tuple[str, list[tuple[bytes, dict[str, Any]]]]  # learner id, its attempts


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


def done_key(command: dict[str, Any]) -> bytes:
    request = command["request"]
    return f"done/{request['tenant_id']}/{request['request_id']}/{command['part']}".encode()


async def apply_part(
    stage: LearnerStage, batch: StateBatch, command: dict[str, Any], partition: int, offset: int
) -> dict[str, Any]:
    """Apply one part (again, for a redelivery); returns its report for the tenant stage."""
    await batch.flush()  # the part scans RocksDB
    request = command["request"]
    tenant_id, mode = request["tenant_id"], request["mode"]
    cut = cut_of(batch.get(learner_state, partition, tenant_id.encode()))
    key = done_key(command)
    done = batch.get(erasures, partition, key)
    learners: list[str] | None = None
    if GROUP_SELECTORS & set(command["selector"]):
        # who is in the teams is decided once, when the part first runs; a redelivery works
        # on the same learners, whatever their groups are by then
        if done is not None:
            learners = done.get("learners", [])
        else:
            learners = members_of(partition, tenant_id, command["selector"])
        command = {
            **command,
            "selector": {"learner_ids": learners, "before": command["selector"]["before"]},
        }
    selector = selector_of(command)
    if done is None:
        done = plan_part(stage, partition, tenant_id, command, selector, cut)
        if learners is not None:
            done["learners"] = learners
        batch.put(erasures, partition, key, done)
    if mode == "physical":
        write_markers(batch, partition, tenant_id, command, done.get("found", []))
    await batch.flush()
    if mode == "physical":
        await remove(stage, batch, partition, offset, tenant_id, command, selector, cut)
    elif mode == "logical":
        await mark_logically_deleted(batch, partition, tenant_id, command, selector)
    return {k: v for k, v in done.items() if k not in ("found", "learners")}


def members_of(partition: int, tenant_id: str, selector: dict[str, Any]) -> list[str]:
    """The learners of this partition in any of the selector's teams (or roles), now."""
    kind = "teams" if "teams" in selector else "roles"
    wanted = set(selector[kind])
    prefix = f"{tenant_id}/".encode()
    members: list[str] = []
    after = None
    while True:
        rows, after = scan_chunk(learner_groups, partition, prefix, after, CHUNK_ATTEMPTS)
        for key, groups in rows:
            if wanted.intersection(groups.get(kind) or ()):
                members.append(key[len(prefix) :].decode())
        if after is None:
            return members


def learner_chunks(
    partition: int, tenant_id: str, command: dict[str, Any]
) -> Iterator[list[LearnerRows]]:
    """The part's learners with all their attempts in this partition, a chunk at a time.

    Each chunk is read whole before it is yielded (no RocksDB iterator outlives a chunk), and
    never splits a learner's attempts.
    """
    selector = command["selector"]
    if "older_than" in selector:
        prefix = f"{tenant_id}/".encode()
        after = None
        while True:
            rows, after = scan_chunk(
                attempts, partition, prefix, after, CHUNK_ATTEMPTS, group_of=learner_of_key
            )
            yield _group_by_learner(rows)
            if after is None:
                return
    if "attempts" in selector:
        learners = sorted({learner for learner, _ in selector["attempts"]})
    else:
        learners = sorted(selector["learner_ids"])
    chunk: list[LearnerRows] = []
    size = 0
    for learner_id in learners:
        rows = scan_prefix(attempts, partition, f"{tenant_id}/{learner_id}/".encode())
        chunk.append((learner_id, rows))
        size += len(rows)
        if size >= CHUNK_ATTEMPTS:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _group_by_learner(rows: list[tuple[bytes, dict[str, Any]]]) -> list[LearnerRows]:
    groups: dict[str, list[tuple[bytes, dict[str, Any]]]] = {}
    for key, record in rows:
        groups.setdefault(record["learner_id"], []).append((key, record))
    return list(groups.items())


def _parsed(rows: list[tuple[bytes, dict[str, Any]]]) -> list[tuple[bytes, str, str, datetime]]:
    return [
        (key, r["learner_id"], r["attempt_id"], datetime.fromisoformat(r["launched_at"]))
        for key, r in rows
    ]


def plan_part(
    stage: LearnerStage,
    partition: int,
    tenant_id: str,
    command: dict[str, Any],
    selector: PartSelector,
    cut: Cut,
) -> dict[str, Any]:
    """The part's outcome, computed without writing anything (also the whole of a preview)."""
    report = PartReport()
    changes: Counter[str] = Counter()
    found: list[str] = []
    for chunk in learner_chunks(partition, tenant_id, command):
        keys = [f"{tenant_id}/{learner_id}".encode() for learner_id, _ in chunk]
        memberships = db_values(learner_state, partition, keys)
        for (_, rows), stored in zip(chunk, memberships, strict=True):
            removal = remove_attempts(windows_of(stored), _parsed(rows), selector, cut)
            if removal is None:
                continue
            report.attempts_affected += len(removal.removed)
            report.learners_affected += 1
            changes.update(removal.window_changes)
            if selector.attempts is not None:
                found.extend(key.decode() for key in removal.removed)
    counts = stage.counters.get(partition, tenant_id)
    logical = command["request"]["mode"] == "logical"  # hidden attempts keep counting
    for window, change in changes.items():
        if change and not logical:
            before = counts.windows.get(window, 0) if counts else 0
            report.windows[window] = (before, before + change)
    done = report.as_dict()
    if found:
        done["found"] = found
    return done


def write_markers(
    batch: StateBatch, partition: int, tenant_id: str, command: dict[str, Any], found: list[str]
) -> None:
    """The erasure markers of a physical part (rewritten on a redelivery: they are idempotent)."""
    selector = command["selector"]
    for attempt_key in found:
        _, learner_id, attempt_id = attempt_key.split("/", 2)
        batch.put(erasures, partition, attempt_marker_key(tenant_id, learner_id, attempt_id), 1)
    if "learner_ids" in selector:
        before = datetime.fromisoformat(selector["before"])
        for learner_id in selector["learner_ids"]:
            key = learner_cutoff_key(tenant_id, learner_id)
            batch.put(erasures, partition, key, later(batch.get(erasures, partition, key), before))
    elif "older_than" in selector:
        key = tenant_cutoff_key(tenant_id)
        cutoff = datetime.fromisoformat(selector["older_than"])
        batch.put(erasures, partition, key, later(batch.get(erasures, partition, key), cutoff))


async def remove(
    stage: LearnerStage,
    batch: StateBatch,
    partition: int,
    offset: int,
    tenant_id: str,
    command: dict[str, Any],
    selector: PartSelector,
    cut: Cut,
) -> None:
    """Delete the selected attempts chunk by chunk; each chunk is durable before the next."""
    for chunk in learner_chunks(partition, tenant_id, command):
        keys = [f"{tenant_id}/{learner_id}".encode() for learner_id, _ in chunk]
        memberships = batch.get_many(learner_state, partition, keys)
        change = CountChange()
        for learner_key, (_, rows), stored in zip(keys, chunk, memberships, strict=True):
            removal = remove_attempts(windows_of(stored), _parsed(rows), selector, cut)
            if removal is None:
                continue
            for key in removal.removed:
                batch.delete(attempts, partition, key)  # the tombstone on `attempts`
            if removal.windows:
                batch.put(learner_state, partition, learner_key, list(removal.windows))
            else:
                batch.delete(learner_state, partition, learner_key)
            change.windows.update(removal.window_changes)
            change.total += removal.total_change
        if change.total or any(change.windows.values()):
            batch.on_durable(_counter_update(stage, partition, tenant_id, cut.id, change, offset))
        await batch.flush(label="deletion")


def _counter_update(
    stage: LearnerStage, partition: int, tenant_id: str, cut_id: str, change: CountChange, seq: int
) -> Callable[[], None]:
    def apply() -> None:
        stage.counters.apply(partition, tenant_id, cut_id, change, seq)

    return apply


async def mark_logically_deleted(
    batch: StateBatch,
    partition: int,
    tenant_id: str,
    command: dict[str, Any],
    selector: PartSelector,
) -> None:
    for chunk in learner_chunks(partition, tenant_id, command):
        for _, rows in chunk:
            for key, record in rows:
                if record.get("logically_deleted"):
                    continue
                launched_at = datetime.fromisoformat(record["launched_at"])
                if selector.selects(record["learner_id"], record["attempt_id"], launched_at):
                    batch.put(attempts, partition, key, {**record, "logically_deleted": True})
        await batch.flush()


def db_values(table: Any, partition: int, keys: list[bytes]) -> list[Any]:
    """Values straight from RocksDB (a planning pass writes nothing, so there is no batch)."""
    if not keys:
        return []
    return [decode(raw) for raw in db_of(table, partition).get(keys)]
