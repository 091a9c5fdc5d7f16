"""Kafka's log cleaner and the restore of a state folder that is days old.

A state folder restores from the changelog offset it stored (streams/worker/recovery.py). When
the log cleaner has meanwhile dropped a tombstone (Kafka's default: a day after it first saw
it) together with the value it deleted, that restore never learns of the deletion and the row
comes back: seed 9000385 of the simulator, once it modelled the cleaner, counted a learner a
physical deletion had removed. So the service creates its compacted topics with tombstones
kept for good (`TopicSpec.configs`), and these tests hold the cleaner model and that setting
to it.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from schemas import topics
from schemas.topics import TOPICS, TOPICS_BY_NAME
from streams.stages import keys
from streams.stages.batch import DurableBatch, take_over
from streams.stages.learner_deletions import REMOVED_FOR_GOOD_TEXT
from streams.stages.learners import LearnerStage
from streams.stages.memory import CLEANED, MemoryLog, MemoryState, never_deposed
from streams.stages.ownership import Ownership
from streams.stages.store import LEARNER, TABLES, TENANT, epoch_header, restore_rule
from streams.stages.tenants import TenantStage

DAY_MS = 86_400_000
HEADERS = epoch_header((1, 1))


def cleaner_settings(topic: str) -> tuple[int, int]:
    config = TOPICS_BY_NAME[topic].configs()
    return int(config.get("min.compaction.lag.ms", "0")), int(config["delete.retention.ms"])


def restore(log: MemoryLog, state: MemoryState, topic: str) -> dict[bytes, bytes]:
    """What streams/worker/recovery.py does: read on from the stored offset."""
    rows = state.partition(topic, 0)
    records = [r for r in log.records(topic, 0)[rows.offset + 1 :] if r is not CLEANED]
    writes, rows.fence = restore_rule(records, rows.fence, lambda names: [None] * len(names))
    rows.write(writes)
    rows.offset = len(log.records(topic, 0)) - 1
    return rows.rows


@pytest.mark.parametrize("changelog", sorted(changelog for _, changelog in TABLES.values()))
def test_a_state_folder_a_month_old_still_sees_a_deletion(changelog: str) -> None:
    clock = [0]
    log = MemoryLog(1, clock=lambda: clock[0])
    log.append(changelog, 0, [(b"kept", b"1"), (b"deleted", b"1")], HEADERS)
    stale = MemoryState()
    assert restore(log, stale, changelog) == {b"kept": b"1", b"deleted": b"1"}
    # another worker deletes the row an hour later; a month passes; the cleaner runs
    clock[0] = 3_600_000
    log.append(changelog, 0, [(b"deleted", None)], HEADERS)
    clock[0] = 30 * DAY_MS
    log.append(changelog, 0, [(b"later", b"1")], HEADERS)
    min_lag_ms, tombstone_ms = cleaner_settings(changelog)
    log.compact(changelog, 0, len(log.records(changelog, 0)), clock[0], min_lag_ms, tombstone_ms)

    assert restore(log, stale, changelog) == {b"kept": b"1", b"later": b"1"}
    assert restore(log, MemoryState(), changelog) == {b"kept": b"1", b"later": b"1"}


def test_every_compacted_topic_keeps_its_tombstones_for_good() -> None:
    for spec in TOPICS:
        config = spec.configs()
        if spec.compacted:
            assert config["cleanup.policy"] == "compact", spec.name
            assert int(config["delete.retention.ms"]) >= 100 * 365 * DAY_MS, spec.name
        else:
            assert config["cleanup.policy"] == "delete", spec.name


def test_the_cleaner_keeps_the_last_record_of_each_key_and_the_active_segment() -> None:
    clock = [0]
    log = MemoryLog(1, clock=lambda: clock[0])
    topic = topics.LEARNER_STATE_CHANGELOG
    log.append(topic, 0, [(b"a", b"1"), (b"b", b"1"), (b"a", b"2"), (b"b", None)])
    clock[0] = 10 * DAY_MS
    log.append(topic, 0, [(b"a", b"3")])  # the active segment: never cleaned
    removed = log.compact(topic, 0, end=4, now_ms=clock[0], min_lag_ms=0, tombstone_ms=DAY_MS)

    assert removed == 3  # a=1 and b=1 (superseded), and b's tombstone (a day old)
    assert [(r.key, r.value, r.offset) for _, r in log.all_records(topic)] == [
        (b"a", b"2", 2),
        (b"a", b"3", 4),
    ]
    assert log.records(topic, 0)[0] is CLEANED  # offsets stay where they were
    assert log.latest(topic) == {b"a": b"3"}


def test_the_cleaner_leaves_records_younger_than_the_compaction_lag() -> None:
    clock = [0]
    log = MemoryLog(1, clock=lambda: clock[0])
    topic = topics.TENANT_STATE_CHANGELOG
    log.append(topic, 0, [(b"a", b"1")])
    clock[0] = 1_000
    log.append(topic, 0, [(b"a", b"2"), (b"a", b"3")])
    removed = log.compact(topic, 0, end=3, now_ms=1_500, min_lag_ms=1_000, tombstone_ms=0)

    assert removed == 0  # a=1 is older than the lag, but what supersedes it is not
    clock[0] = 5_000
    assert log.compact(topic, 0, end=3, now_ms=5_000, min_lag_ms=1_000, tombstone_ms=0) == 2


KEY = b"parts/acme"  # any key (an attempt's in the attempts table)
PUBLISHED = {"cut": "1970-01-01/12/UTC", "license": None, "windows": {"2026-01-01": [2, 2]}}


def rightful_and_late(changelog: str, clock: list[int]) -> MemoryLog:
    """Owner A (epoch 1) writes the key; B (epoch 2) takes over and writes it; A, deposed and
    unaware, writes it again afterwards; then one more record, so that the segment holding the
    three can close. B dies before its lineage check answers A's record."""
    log = MemoryLog(partitions=1, clock=lambda: clock[0])
    a, b = epoch_header((1, 1)), epoch_header((2, 2))
    first = [(keys.EPOCH, orjson.dumps([1, 1])), (b"pub/acme", orjson.dumps(PUBLISHED))]
    log.append(changelog, 0, [*first, (KEY, orjson.dumps({"0": 2}))], a)
    log.append(changelog, 0, [(keys.EPOCH, orjson.dumps([2, 2]))], b)
    log.append(changelog, 0, [(KEY, orjson.dumps({"0": 3}))], b)  # B's truth
    log.append(changelog, 0, [(KEY, orjson.dumps({"0": 1}))], a)  # A's late write
    log.append(changelog, 0, [(b"pub/acme", orjson.dumps(PUBLISHED))], a)
    return log


@pytest.mark.parametrize("table", sorted(TABLES))
def test_a_late_record_of_a_deposed_owner_costs_nothing_while_the_compaction_lag_holds(
    table: str,
) -> None:
    """Found by a review (2026-12-01): for Kafka, A's late record is the later one of the key,
    so its cleaner removes B's. A restore then skips A's record (a lower epoch) and has nothing
    for the key. Within `min.compaction.lag.ms` of B's write nothing is cleaned, and the next
    owner's restore marks the key and its takeover writes B's value again."""
    stage, changelog = TABLES[table]
    clock = [0]
    log = rightful_and_late(changelog, clock)
    clock[0] = 12 * 3_600_000  # half a day later the cleaner runs; the next owner restores
    min_lag_ms, tombstone_ms = cleaner_settings(changelog)
    end = len(log.records(changelog, 0)) - 1  # the last record: the active segment
    assert log.compact(changelog, 0, end, clock[0], min_lag_ms, tombstone_ms) == 0

    state = MemoryState()
    for other, (owner, _) in TABLES.items():
        if owner == stage:
            state.partition(other, 0)
    rows = state.partition(table, 0)
    records = [r for r in log.records(changelog, 0) if r is not CLEANED]
    writes, fence = restore_rule(records, rows.fence, lambda names: [None] * len(names))
    state.apply(table, 0, writes, len(log.records(changelog, 0)) - 1, fence)
    repair = TenantStage(1).repair_outputs if stage == TENANT else None
    batch = DurableBatch(state, log, Ownership(), repair, outputs_first=stage != TENANT)
    asyncio.run(take_over(batch, stage, [0], generation=3, still_member=never_deposed))
    asyncio.run(batch.repair_marked(stage, [0]))

    assert state.get_many(table, 0, [KEY]) == [orjson.dumps({"0": 3})]
    assert log.latest(changelog)[KEY] == orjson.dumps({"0": 3})


def test_the_compacted_topics_wait_a_day_before_cleaning() -> None:
    for spec in TOPICS:
        if spec.compacted:
            assert int(spec.configs()["min.compaction.lag.ms"]) >= DAY_MS, spec.name


WINDOW = "2026-01-01"  # the default cut's window of a launch on 2026-01-09
LAUNCHED = 1767916800.0  # 2026-01-09T00:00:00Z
ATTEMPT = {
    "tenant_id": "acme",
    "learner_id": "ada",
    "element_id": "e1",
    "attempt_id": "a1",
    "launched_at": "2026-01-09T00:00:00+00:00",
    "logically_deleted": False,
}


def cleaned_after_two_weeks(
    changelog: str, key: bytes, truth: bytes, late: bytes | None
) -> MemoryLog:
    """B (epoch 2) writes `truth`; A, deposed and unaware, writes `late` after it; no worker
    runs for two weeks, and the cleaner removes B's record (for Kafka, A's is the later one)."""
    clock = [0]
    log = MemoryLog(partitions=1, clock=lambda: clock[0])
    a, b = epoch_header((1, 1)), epoch_header((2, 2))
    log.append(changelog, 0, [(keys.EPOCH, orjson.dumps([1, 1]))], a)
    log.append(changelog, 0, [(keys.EPOCH, orjson.dumps([2, 2]))], b)
    log.append(changelog, 0, [(key, truth)], b)
    log.append(changelog, 0, [(key, late)], a)
    log.append(changelog, 0, [(keys.EPOCH, orjson.dumps([1, 1]))], a)  # closes the segment
    clock[0] = 14 * DAY_MS
    min_lag_ms, tombstone_ms = cleaner_settings(changelog)
    end = len(log.records(changelog, 0)) - 1
    log.compact(changelog, 0, end, clock[0], min_lag_ms, tombstone_ms)
    assert log.records(changelog, 0)[2] is CLEANED  # B's record is gone for good
    return log


def restored_learner_state(log: MemoryLog, rows: dict[str, dict[bytes, bytes]]) -> MemoryState:
    """A new owner's state folder: `rows` of some tables as they were, the changelogs of the
    others restored by the rule of streams/worker/recovery.py."""
    state = MemoryState()
    for table, (owner, changelog) in TABLES.items():
        if owner != LEARNER:
            continue
        state.partition(table, 0)
        if table in rows:
            state.apply(table, 0, rows[table], 0, (2, 2))
            continue
        records = [r for r in log.records(changelog, 0) if r is not CLEANED]
        fence = state.partition(table, 0).fence
        writes, fence = restore_rule(records, fence, lambda names: [None] * len(names))
        state.apply(table, 0, writes, len(log.records(changelog, 0)) - 1, fence)
    return state


def take_over_learners(state: MemoryState, log: MemoryLog) -> LearnerStage:
    stage = LearnerStage(partitions=1)
    batch = DurableBatch(state, log, Ownership(), None, outputs_first=True)
    epochs = asyncio.run(take_over(batch, LEARNER, [0], generation=3, still_member=never_deposed))
    asyncio.run(batch.repair_marked(LEARNER, [0], stage.heal_marked))
    stage.rebuild(batch, epochs)
    return stage


def counted(stage: LearnerStage) -> tuple[int, dict[str, int]]:
    counts = stage.counters.tenant(0, "acme", "")
    return counts.total, counts.windows


def test_a_membership_lost_to_the_cleaner_is_recomputed_from_the_attempts() -> None:
    """Seed 9981521: the restore skips A's late tombstone of the membership and keeps nothing;
    the takeover recomputes a marked membership from the learner's attempts instead of writing
    that nothing again."""
    changelog = topics.LEARNER_STATE_CHANGELOG
    membership = keys.membership("acme", "ada")
    truth = {WINDOW: [LAUNCHED, LAUNCHED]}
    log = cleaned_after_two_weeks(changelog, membership, orjson.dumps(truth), None)
    attempt = {keys.attempt("acme", "ada", "a1"): orjson.dumps(ATTEMPT)}
    state = restored_learner_state(log, {keys.ATTEMPTS: attempt})
    assert state.get_many(keys.LEARNER_STATE, 0, [membership]) == [None]  # what was kept

    stage = take_over_learners(state, log)

    assert orjson.loads(log.latest(changelog)[membership]) == truth
    assert state.get_many(keys.LEARNER_STATE, 0, [membership]) == [orjson.dumps(truth)]
    assert state.repairs(keys.LEARNER_STATE, 0) == {}  # answered: the mark is dropped
    assert counted(stage) == (1, {WINDOW: 1})


def test_an_attempt_lost_to_the_cleaner_is_applied_again_from_the_late_record() -> None:
    """The same with the attempt record: B stored it, A stored it again late (it applied the
    same launch command), the cleaner removed B's. The takeover applies A's record as a launch
    again, and the learner is still counted."""
    key = keys.attempt("acme", "ada", "a1")
    log = cleaned_after_two_weeks(
        topics.ATTEMPTS, key, orjson.dumps(ATTEMPT), orjson.dumps(ATTEMPT)
    )
    membership = {keys.membership("acme", "ada"): orjson.dumps({WINDOW: [LAUNCHED, LAUNCHED]})}
    state = restored_learner_state(log, {keys.LEARNER_STATE: membership})
    assert state.get_many(keys.ATTEMPTS, 0, [key]) == [None]  # what the restore kept

    stage = take_over_learners(state, log)

    assert orjson.loads(log.latest(topics.ATTEMPTS)[key]) == ATTEMPT
    assert orjson.loads(state.get_many(keys.ATTEMPTS, 0, [key])[0]) == ATTEMPT
    assert counted(stage) == (1, {WINDOW: 1})


def test_an_attempt_a_deletion_removed_stays_removed_whatever_the_late_record() -> None:
    """B removed the attempt (its erasure marker, then its tombstone); A, which never saw the
    deletion, wrote the attempt late. The cleaner removed B's tombstone: the late record is
    applied again as a launch and refused by the marker, as any repeat of the attempt is."""
    key = keys.attempt("acme", "ada", "a1")
    log = cleaned_after_two_weeks(topics.ATTEMPTS, key, None, orjson.dumps(ATTEMPT))
    marker = keys.attempt_marker("acme", "ada", "a1")
    state = restored_learner_state(
        log, {keys.ERASURES: {marker: orjson.dumps(REMOVED_FOR_GOOD_TEXT)}, keys.LEARNER_STATE: {}}
    )

    stage = take_over_learners(state, log)

    last = [r for r in log.records(topics.ATTEMPTS, 0) if r is not CLEANED and r.key == key][-1]
    assert last.value is None and last.epoch > (2, 2)  # B's answer again, by the new owner
    assert state.get_many(keys.ATTEMPTS, 0, [key]) == [None]
    assert counted(stage) == (0, {})
