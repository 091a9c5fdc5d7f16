"""A tenant-stage takeover's lineage starts where its restore ended.

Found by simulator seed 1751708: a deposed owner's changelog records landed after the new owner
had restored and before it read the end offsets at its takeover. The new owner's rows lacked
them, its lineage check started past them, and any later restore read them: two owners later
disagreed on which count records were published, and one that only the deposed owner's state
knew was never tombstoned when the license changed its windows. Now the first flush finds such
records, writes their keys again and answers every window the deposed owner published (its
count records may have landed before the takeover too).
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from schemas import topics
from streams.stages import keys
from streams.stages.batch import DurableBatch, take_over
from streams.stages.memory import MemoryState, MemoryStore, never_deposed
from streams.stages.ownership import Ownership
from streams.stages.store import FENCED_OUTPUTS, LEARNER, TENANT, Fenced, epoch_header
from streams.stages.tenants import TenantStage

CHANGELOG = topics.TENANT_STATE_CHANGELOG
PUBLISHED = {"cut": "1970-01-01/12/UTC", "license": None, "windows": {"2026-01-01": [2, 2]}}


def restored_owner() -> MemoryStore:
    """A store whose tenant-state partition 0 was restored from a changelog of three records
    of owner (1, 1): its own last view of `pub/acme` is one window."""
    store = MemoryStore(partitions=1)
    rows = [
        (keys.EPOCH, orjson.dumps([1, 1])),
        (b"pub/acme", orjson.dumps(PUBLISHED)),
        (b"parts/acme", orjson.dumps({"0": 2})),
    ]
    store.log.append(CHANGELOG, 0, rows, epoch_header((1, 1)))
    store.state.apply(keys.TENANT_STATE, 0, dict(rows), 2, (1, 1))
    return store


def test_a_deposed_owners_records_between_restore_and_takeover_are_answered() -> None:
    store = restored_owner()
    # the deposed owner (1, 1) writes on after the restore ended
    zombie = [(b"pub/acme", orjson.dumps({**PUBLISHED, "windows": {"2025-01-01": [0, 2]}}))]
    store.log.append(CHANGELOG, 0, zombie, epoch_header((1, 1)))
    batch = store.batch()
    asyncio.run(take_over(batch, TENANT, [0], generation=3, still_member=never_deposed))
    changelog = store.log.records(CHANGELOG, 0)
    last = [record for record in changelog if record.key == b"pub/acme"][-1]
    assert last.epoch == (2, 3), "the key the deposed owner wrote is written again"
    assert orjson.loads(last.value or b"") == PUBLISHED
    assert store.ownership.zombies_repaired == 1


def test_a_takeover_right_after_its_restore_rewrites_nothing() -> None:
    store = restored_owner()
    batch = store.batch()
    asyncio.run(take_over(batch, TENANT, [0], generation=3, still_member=never_deposed))
    changelog = store.log.records(CHANGELOG, 0)
    # where its outputs' lineage starts (the end: nothing was published), and its epoch
    assert [record.key for record in changelog[3:]] == [keys.OUTPUTS_FROM, keys.EPOCH]
    outputs_from = orjson.loads(changelog[3].value or b"")
    assert outputs_from == {"epoch": [2, 3], "from": {topic: 0 for topic in FENCED_OUTPUTS}}
    assert store.ownership.zombies_repaired == 0


def test_a_window_only_a_deposed_owner_published_gets_a_tombstone() -> None:
    """The deposed owner's record of what it published and its count record of a window this
    owner does not have both land before the takeover read the end offsets."""
    store = restored_owner()
    published = {**PUBLISHED, "windows": {"2025-01-01": [0, 2], "2026-01-01": [2, 2]}}
    store.log.append(CHANGELOG, 0, [(b"pub/acme", orjson.dumps(published))], epoch_header((1, 1)))
    count_key = keys.count_record("acme", "2025-01-01")
    store.log.append(
        topics.ACTIVE_LEARNER_COUNTS,
        0,
        [(count_key, b'{"active_learners": 0}')],
        epoch_header((1, 1)),
    )
    batch = store.batch(TenantStage(1).repair_outputs)
    asyncio.run(take_over(batch, TENANT, [0], generation=3, still_member=never_deposed))
    records = store.log.records(topics.ACTIVE_LEARNER_COUNTS, 0)
    assert [r.value for r in records if r.key == count_key][-1] is None


def learner_restored() -> MemoryStore:
    """A store whose learner partition 0 was restored from owner (1, 1)'s takeover record."""
    store = MemoryStore(partitions=1)
    rows = [(keys.EPOCH, orjson.dumps([1, 1]))]
    store.log.append(topics.LEARNER_STATE_CHANGELOG, 0, rows, epoch_header((1, 1)))
    store.state.apply(keys.LEARNER_STATE, 0, dict(rows), 0, (1, 1))
    return store


def test_a_learner_takeover_catches_up_with_records_that_landed_after_its_restore() -> None:
    """Seed 1921915: a deposed learner owner's attempt and membership landed after the restore.
    The takeover applies them as a restore would, so that its rows, their stored offsets and
    the changelogs agree: no tombstone on the public `attempts` topic, no key left behind."""
    store = learner_restored()
    attempt = (keys.attempt("t", "l", "a1"), b'{"element_id": "e"}')
    membership = (keys.membership("t", "l"), b'{"2026-01-01": [1.0, 1.0]}')
    store.log.append(topics.ATTEMPTS, 0, [attempt], epoch_header((1, 1)))
    store.log.append(topics.LEARNER_STATE_CHANGELOG, 0, [membership], epoch_header((1, 1)))
    asyncio.run(take_over(store.batch(), LEARNER, [0], generation=3, still_member=never_deposed))
    state = store.state
    assert state.get_many(keys.ATTEMPTS, 0, [attempt[0]]) == [attempt[1]]
    assert state.get_many(keys.LEARNER_STATE, 0, [membership[0]]) == [membership[1]]
    assert state.restored_offset(keys.ATTEMPTS, 0) == 0
    assert [r.value for r in store.log.records(topics.ATTEMPTS, 0)] == [attempt[1]]
    assert store.ownership.zombies_repaired == 0
    epoch = [r for r in store.log.records(topics.LEARNER_STATE_CHANGELOG, 0) if r.key == keys.EPOCH]
    assert epoch[-1].epoch == (2, 3)


def test_a_learner_catch_up_marks_what_a_restore_would_skip() -> None:
    """Records of an owner older than one already applied are marked for repair, not applied."""
    store = learner_restored()
    newer = [(keys.EPOCH, orjson.dumps([2, 2]))]
    store.log.append(topics.LEARNER_STATE_CHANGELOG, 0, newer, epoch_header((2, 2)))
    late = (keys.membership("t", "l"), b'{"2026-01-01": [1.0, 1.0]}')
    first, _ = store.log.append(topics.LEARNER_STATE_CHANGELOG, 0, [late], epoch_header((1, 1)))
    asyncio.run(take_over(store.batch(), LEARNER, [0], generation=3, still_member=never_deposed))
    assert store.state.get_many(keys.LEARNER_STATE, 0, [late[0]]) == [None]
    assert store.state.repairs(keys.LEARNER_STATE, 0) == {late[0]: [first]}
    epoch = [r for r in store.log.records(topics.LEARNER_STATE_CHANGELOG, 0) if r.key == keys.EPOCH]
    assert epoch[-1].epoch == (3, 3), "an earlier generation's takeover is counted on from"


def test_a_deposed_takeover_that_catches_up_with_its_successor_takes_nothing_over() -> None:
    """Found by a review: a worker of generation 5 restored, was deposed without knowing it,
    and took over after its successor (generation 6) had. Counting on from the successor's
    takeover record it caught up with, it took (3, 5) > (2, 6) and fenced the real owner. Now
    the group coordinator's answer stops it: generation 5 is gone, nothing is written."""
    log = MemoryStore(partitions=1).log
    log.append(
        topics.LEARNER_STATE_CHANGELOG,
        0,
        [(keys.EPOCH, orjson.dumps([1, 1]))],
        epoch_header((1, 1)),
    )

    def restored_copy() -> MemoryState:
        state = MemoryState()
        state.apply(keys.LEARNER_STATE, 0, {keys.EPOCH: orjson.dumps([1, 1])}, 0, (1, 1))
        return state

    async def group_at_6(generation: int) -> bool:
        return generation == 6

    stale, owner = restored_copy(), restored_copy()
    owner_ownership = Ownership()
    epochs = asyncio.run(
        take_over(DurableBatch(owner, log, owner_ownership), LEARNER, [0], 6, group_at_6)
    )
    assert epochs == {0: (2, 6)}
    written = len(log.records(topics.LEARNER_STATE_CHANGELOG, 0))
    stale_ownership = Ownership()
    with pytest.raises(Fenced):
        asyncio.run(
            take_over(DurableBatch(stale, log, stale_ownership), LEARNER, [0], 5, group_at_6)
        )
    assert not stale_ownership.owns(LEARNER, 0)
    assert len(log.records(topics.LEARNER_STATE_CHANGELOG, 0)) == written
    # the successor writes on, unfenced, and its record of the epoch is the last
    batch = DurableBatch(owner, log, owner_ownership)
    batch.put(keys.LEARNER_STATE, 0, keys.membership("t", "l"), {"2026-01-01": [1.0, 1.0]})
    asyncio.run(batch.flush())
    changelog = log.records(topics.LEARNER_STATE_CHANGELOG, 0)
    assert [r.epoch for r in changelog if r.key == keys.EPOCH][-1] == (2, 6)
    assert changelog[-1].epoch == (2, 6)


def test_records_landing_while_a_learner_takeover_reads_its_offsets_are_in_its_lineage() -> None:
    """Found by a review: the catch-up read its own end offsets and the lineage others, a few
    awaits later; a deposed owner's records landing in between were neither applied nor
    checked, and the takeover's write stored an offset past them. Now the catch-up reads up
    to where the lineage starts, and the takeover's flush finds what lands after."""
    store = learner_restored()
    membership = (keys.membership("t", "l"), b'{"2026-01-01": [1.0, 1.0]}')
    reads = 0
    end_offset = store.log.end_offset

    async def landing_during_the_reads(topic: str, partition: int) -> int:
        nonlocal reads
        reads += 1
        if reads == 3:  # after the learner-state read: the deposed owner's send lands
            store.log.append(topics.LEARNER_STATE_CHANGELOG, 0, [membership], epoch_header((1, 1)))
        return await end_offset(topic, partition)

    store.log.end_offset = landing_during_the_reads  # type: ignore[method-assign]
    asyncio.run(take_over(store.batch(), LEARNER, [0], generation=3, still_member=never_deposed))
    rows = store.state.get_many(keys.LEARNER_STATE, 0, [membership[0]])
    changelog = store.log.records(topics.LEARNER_STATE_CHANGELOG, 0)
    last = [record.value for record in changelog if record.key == membership[0]][-1]
    assert rows == [last], "the rows and the changelog agree on the membership"
