"""A deposed owner's changelog records are answered even when their owner crashes first.

Two gaps, found by a review of the takeover lineage fix:
- a flush that found such records wrote its local rows, and the offset they reach, before its
  repair round; a crash in between left the records below the stored offset, where no restore
  reads them again, and the topic's last record of their keys stayed the deposed owner's;
- a restore that skipped such a record (a lower epoch than one applied) marked its key, and
  the takeover wrote the key again, but what the record published (count records of windows
  this owner does not have) was never answered.
Now a mark names the records' offsets, the flush writes it with its rows, and the takeover
reads the records back and answers them like a flush does (`DurableBatch.repair_marked`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import orjson
import pytest

from schemas import topics
from streams.stages import keys
from streams.stages.batch import DurableBatch, take_over
from streams.stages.memory import MemoryLog, MemoryState, never_deposed
from streams.stages.ownership import Ownership
from streams.stages.store import TENANT, Headers, Pair, TopicPartition, epoch_header, mark_value
from streams.stages.tenants import TenantStage

CHANGELOG = topics.TENANT_STATE_CHANGELOG
COUNTS = topics.ACTIVE_LEARNER_COUNTS
PUBLISHED = {"cut": "1970-01-01/12/UTC", "license": None, "windows": {"2026-01-01": [2, 2]}}
THEIRS = {**PUBLISHED, "windows": {"2025-01-01": [0, 2], "2026-01-01": [2, 2]}}
THEIR_COUNT = keys.count_record("acme", "2025-01-01")


class Crash(Exception):
    """The process dies."""


class DyingLog(MemoryLog):
    """Kafka, and a process that dies at its n-th send (counted from `arm`)."""

    def __init__(self) -> None:
        super().__init__(partitions=1)
        self.sends_left: int | None = None

    def arm(self, sends: int) -> None:
        self.sends_left = sends

    async def send(
        self,
        groups: Mapping[TopicPartition, Sequence[Pair]],
        headers: Mapping[TopicPartition, Headers] | None = None,
    ) -> dict[TopicPartition, tuple[int, int]]:
        if self.sends_left is not None:
            self.sends_left -= 1
            if self.sends_left <= 0:
                self.sends_left = None
                raise Crash
        return await super().send(groups, headers)


def tenant_batch(state: MemoryState, log: MemoryLog, ownership: Ownership) -> DurableBatch:
    return DurableBatch(state, log, ownership, TenantStage(1).repair_outputs, outputs_first=False)


def restored(log: MemoryLog) -> MemoryState:
    """Tenant-state partition 0 restored from three records of owner (1, 1)."""
    state = MemoryState()
    rows = [
        (keys.EPOCH, orjson.dumps([1, 1])),
        (b"pub/acme", orjson.dumps(PUBLISHED)),
        (b"parts/acme", orjson.dumps({"0": 2})),
    ]
    log.append(CHANGELOG, 0, rows, epoch_header((1, 1)))
    state.apply(keys.TENANT_STATE, 0, dict(rows), 2, (1, 1))
    return state


def take_over_tenant(batch: DurableBatch, generation: int) -> None:
    """Tenant partition 0 taken over by a process the group never deposes."""
    asyncio.run(take_over(batch, TENANT, [0], generation=generation, still_member=never_deposed))


def last_value(log: MemoryLog, topic: str, key: bytes) -> bytes | None:
    return [record.value for record in log.records(topic, 0) if record.key == key][-1]


def test_a_crash_between_a_flush_and_its_repair_leaves_marks_the_next_takeover_answers() -> None:
    log = DyingLog()
    state = restored(log)
    ownership = Ownership()
    take_over_tenant(tenant_batch(state, log, ownership), generation=3)
    # the deposed owner (1, 1) published a window this owner does not have, and wrote its
    # record of it after this owner's takeover
    log.append(COUNTS, 0, [(THEIR_COUNT, b'{"active_learners": 0}')], epoch_header((1, 1)))
    first, _ = log.append(CHANGELOG, 0, [(b"pub/acme", orjson.dumps(THEIRS))], epoch_header((1, 1)))

    # this owner's next flush finds the record, writes its rows, and dies in the repair round
    batch = tenant_batch(state, log, ownership)
    batch.put(keys.TENANT_STATE, 0, b"parts/acme", {"0": 3})
    log.arm(sends=2)
    with pytest.raises(Crash):
        asyncio.run(batch.flush())
    assert state.restored_offset(keys.TENANT_STATE, 0) > first, "the rows reach past it"
    assert state.repairs(keys.TENANT_STATE, 0) == {b"pub/acme": [first]}
    assert orjson.loads(last_value(log, CHANGELOG, b"pub/acme") or b"") == THEIRS

    # the process starts again on the same state folder
    batch = tenant_batch(state, log, Ownership())
    take_over_tenant(batch, generation=4)
    asyncio.run(batch.repair_marked(TENANT, [0]))
    assert orjson.loads(last_value(log, CHANGELOG, b"pub/acme") or b"") == PUBLISHED
    assert last_value(log, COUNTS, THEIR_COUNT) is None, "the window only they had is gone"
    assert state.repairs(keys.TENANT_STATE, 0) == {}


def test_a_flush_that_repairs_at_once_leaves_no_mark() -> None:
    log = DyingLog()
    state = restored(log)
    ownership = Ownership()
    take_over_tenant(tenant_batch(state, log, ownership), generation=3)
    log.append(CHANGELOG, 0, [(b"pub/acme", orjson.dumps(THEIRS))], epoch_header((1, 1)))
    batch = tenant_batch(state, log, ownership)
    batch.put(keys.TENANT_STATE, 0, b"parts/acme", {"0": 3})
    asyncio.run(batch.flush())
    assert state.repairs(keys.TENANT_STATE, 0) == {}
    assert orjson.loads(last_value(log, CHANGELOG, b"pub/acme") or b"") == PUBLISHED
    assert last_value(log, COUNTS, THEIR_COUNT) is None


def test_a_record_a_restore_skipped_has_what_it_published_answered() -> None:
    """The restore skipped the deposed owner's record of what it published (its epoch is lower
    than one already applied) and marked the key with the record's offset."""
    log = MemoryLog(partitions=1)
    state = restored(log)
    log.append(COUNTS, 0, [(THEIR_COUNT, b'{"active_learners": 0}')], epoch_header((1, 1)))
    first, _ = log.append(CHANGELOG, 0, [(b"pub/acme", orjson.dumps(THEIRS))], epoch_header((1, 1)))
    # what a restore writes for it (streams/worker/recovery.py, the simulator's restore)
    state.apply(
        keys.TENANT_STATE, 0, {keys.REPAIR + b"pub/acme": mark_value([first])}, first, (2, 2)
    )
    batch = tenant_batch(state, log, Ownership())
    take_over_tenant(batch, generation=3)
    asyncio.run(batch.repair_marked(TENANT, [0]))
    assert last_value(log, COUNTS, THEIR_COUNT) is None
    assert orjson.loads(last_value(log, CHANGELOG, b"pub/acme") or b"") == PUBLISHED
    assert state.repairs(keys.TENANT_STATE, 0) == {}


def test_a_mark_of_an_older_version_still_has_its_key_written_again() -> None:
    log = MemoryLog(partitions=1)
    state = restored(log)
    log.append(CHANGELOG, 0, [(b"pub/acme", orjson.dumps(THEIRS))], epoch_header((1, 1)))
    state.apply(keys.TENANT_STATE, 0, {keys.REPAIR + b"pub/acme": b""}, 3, (2, 2))
    assert state.repairs(keys.TENANT_STATE, 0) == {b"pub/acme": []}
    batch = tenant_batch(state, log, Ownership())
    take_over_tenant(batch, generation=3)
    asyncio.run(batch.repair_marked(TENANT, [0]))
    assert orjson.loads(last_value(log, CHANGELOG, b"pub/acme") or b"") == PUBLISHED
    assert state.repairs(keys.TENANT_STATE, 0) == {}


@pytest.mark.parametrize("second_zombie", [False, True])
def test_a_takeover_flush_that_meets_a_restores_mark_keeps_it_for_the_repair(
    second_zombie: bool,
) -> None:
    """Found by a review: a restore marked a deposed owner's record of what it published; the
    takeover's own flush then found a second deposed owner's record of the same key, merged
    the marks, answered only its own find and dropped the mark, so the first record's window
    stayed counted. A mark that was on disk before a flush now stays for `repair_marked`."""
    log = MemoryLog(partitions=1)
    state = restored(log)  # owner A (1, 1): offsets 0-2
    # B (2, 2) takes over; A, deposed, publishes a window only it has and records it
    log.append(CHANGELOG, 0, [(keys.EPOCH, orjson.dumps([2, 2]))], epoch_header((2, 2)))
    log.append(COUNTS, 0, [(THEIR_COUNT, b'{"active_learners": 0}')], epoch_header((1, 1)))
    first, _ = log.append(CHANGELOG, 0, [(b"pub/acme", orjson.dumps(THEIRS))], epoch_header((1, 1)))
    # C restores offsets 0-4 (as recovery.py writes it): 3 applied, 4 skipped and marked
    restored_rows = {
        keys.EPOCH: orjson.dumps([2, 2]),
        keys.REPAIR + b"pub/acme": mark_value([first]),
    }
    state.apply(keys.TENANT_STATE, 0, restored_rows, first, (2, 2))
    if second_zombie:  # B, deposed in turn, writes pub/acme after C's restore ended
        log.append(CHANGELOG, 0, [(b"pub/acme", orjson.dumps(PUBLISHED))], epoch_header((2, 2)))
    batch = tenant_batch(state, log, Ownership())
    take_over_tenant(batch, generation=3)
    assert first in state.repairs(keys.TENANT_STATE, 0)[b"pub/acme"]
    asyncio.run(batch.repair_marked(TENANT, [0]))
    assert state.repairs(keys.TENANT_STATE, 0) == {}
    assert last_value(log, COUNTS, THEIR_COUNT) is None, "A's window is no longer counted"


def test_marks_found_by_the_periodic_lineage_check_are_on_disk_before_their_repair() -> None:
    """`check_lineage` moves this owner's lineage past what it found; if the repair fails, the
    marks are what the next takeover repairs (and, since a failure the worker survives brings
    no takeover, the lineage moves back: the next write finds the records again and answers
    them, tests/stages/test_survived_repairs.py)."""
    log = MemoryLog(partitions=1)
    state = restored(log)
    ownership = Ownership()
    take_over_tenant(tenant_batch(state, log, ownership), generation=3)
    first, _ = log.append(CHANGELOG, 0, [(b"pub/acme", orjson.dumps(THEIRS))], epoch_header((1, 1)))
    answers: list[object] = []

    def failing_answer(*_: object) -> None:
        answers.append(1)
        if len(answers) == 1:
            raise RuntimeError("the answer failed")

    batch = DurableBatch(state, log, ownership, failing_answer, outputs_first=False)
    with pytest.raises(RuntimeError):
        asyncio.run(batch.check_lineage(TENANT, [0]))
    assert state.repairs(keys.TENANT_STATE, 0) == {b"pub/acme": [first]}
    batch.put(keys.TENANT_STATE, 0, b"parts/acme", {"0": 3})
    asyncio.run(batch.flush())
    assert state.repairs(keys.TENANT_STATE, 0) == {b"pub/acme": [first]}, "kept for a takeover"
    assert len(answers) == 2, "the flush answered the records again"
