"""A review of 537de8d/dee4a4d (a failed flush: the group applied again, or the worker stopped).

- A flush a handler makes itself (a tenant tick, a lineage check, a deletion's chunks) takes
  the group's earlier events out of the batch. When it failed, `apply_events` took it for the
  event's failure: it retried and dead-lettered the event, and the group was acknowledged
  without the earlier events (gone from the batch, never written locally) and, after a failure
  once the local writes began, without the worker stopping (`LocalWriteFailed` swallowed).
- A lineage check moved `Ownership.expected` past a range before reading it: when the read back
  failed, the group applied again began its check after the range, and a deposed owner's
  record in it was never repaired.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from schemas import topics
from streams.stages import keys
from streams.stages.batch import DurableBatch
from streams.stages.loop import apply_events
from streams.stages.memory import MemoryLog, MemoryState
from streams.stages.ownership import Ownership
from streams.stages.store import (
    CHANGELOG_TABLE,
    LEARNER,
    TABLES,
    TENANT,
    Batch,
    LocalWriteFailed,
    epoch_header,
)


class OutputsFail(MemoryLog):
    """Takes the changelog, then fails on the count records (after the tenant stage's state)."""

    async def send(self, groups, headers=None):  # type: ignore[no-untyped-def]
        if any(topic == topics.ACTIVE_LEARNER_COUNTS for topic, _ in groups):
            raise RuntimeError("the producer broke")
        return await super().send(groups, headers)


class ChangelogFailsOnce(MemoryLog):
    """Fails the first changelog send (before any local write): a failure the group survives
    by being applied again."""

    failed = False

    async def send(self, groups, headers=None):  # type: ignore[no-untyped-def]
        if not self.failed and any(topic in CHANGELOG_TABLE for topic, _ in groups):
            self.failed = True
            raise RuntimeError("the producer broke")
        return await super().send(groups, headers)


def _batch(state: MemoryState, log: MemoryLog, stage: str, outputs_first: bool) -> DurableBatch:
    ownership = Ownership()
    ownership.claim(stage, 0, (1, 0))
    return DurableBatch(state, log, ownership, outputs_first=outputs_first)


async def _tick_after_a_count(batch: Batch, event: str) -> None:
    """Event "count" writes a count to the tenant state and emits it; event "tick" flushes
    first, as `TenantStage.on_tick` does."""
    if event == "count":
        batch.put(keys.TENANT_STATE, 0, b"pub/acme/2026-01-01", {"active_learners": 3})
        batch.emit(topics.ACTIVE_LEARNER_COUNTS, b"acme/2026-01-01", b"3", 0)
    else:
        await batch.flush()


def test_a_local_write_failure_in_a_handlers_flush_is_not_dead_lettered() -> None:
    """Sequence: a tenant group [count, tick]; the tick's flush writes the count to the state
    and the count record fails. Before: the tick was retried (its flush now empty) and the
    group acknowledged; the state says the count was published, so nothing sends it again
    until a takeover, and the worker did not stop."""
    state = MemoryState()
    state.partition(keys.TENANT_STATE, 0)
    batch = _batch(state, OutputsFail(1), TENANT, outputs_first=False)
    given_up: list[Any] = []

    def give_up(batch: Batch, event: str, exc: BaseException) -> None:
        given_up.append((event, exc))

    with pytest.raises(LocalWriteFailed):
        asyncio.run(apply_events(batch, ["count", "tick"], _tick_after_a_count, give_up, "tenants"))
    assert given_up == []


def test_a_failure_before_the_local_writes_in_a_handlers_flush_fails_the_group() -> None:
    """Sequence: a learner group [write, flush]; the flush inside the second event fails
    before anything local is written. Before: the second event was retried and passed, and
    the group was acknowledged while the first event's write was in neither the local state
    nor its changelog (it had left the batch with the failed flush)."""
    state = MemoryState()
    state.partition(keys.LEARNER_STATE, 0)
    log = ChangelogFailsOnce(1)
    batch = _batch(state, log, LEARNER, outputs_first=True)

    async def handle(batch: Batch, event: str) -> None:
        if event == "write":
            batch.put(keys.LEARNER_STATE, 0, b"m/acme/l1", {"2026-01-01": [1.0, 1.0]})
        else:
            await batch.flush()

    def give_up(batch: Batch, event: str, exc: BaseException) -> None:
        raise AssertionError(f"{event} given up: {exc!r}")

    try:
        asyncio.run(apply_events(batch, ["write", "flush"], handle, give_up, "learners"))
    except RuntimeError:
        return  # the group failed: the agent applies it again
    # returned normally: the group is acknowledged, so the write must be there
    assert state.get_many(keys.LEARNER_STATE, 0, [b"m/acme/l1"]) != [None], "the write was lost"


class ReadFailsOnce(MemoryLog):
    """A read back of the log fails once (the lineage check's consumer), before any local
    write: the flush fails and the group is applied again."""

    failed = False

    async def read(self, topic: str, partition: int, start: int, end: int):  # type: ignore[no-untyped-def]
        if not self.failed:
            self.failed = True
            raise RuntimeError("the reader broke")
        return await super().read(topic, partition, start, end)


def test_a_failed_lineage_read_does_not_skip_a_deposed_owners_record() -> None:
    """Sequence: a deposed owner's attempt record lands in the changelog after this owner's
    last one; the next flush's read back of it fails, and the group is applied again. Before:
    `expected` had moved past the record, so the second flush did not look at it, and it stayed
    the key's last record (a restore elsewhere would read the deposed owner's value)."""
    state = MemoryState()
    state.partition(keys.ATTEMPTS, 0)
    log = ReadFailsOnce(1)
    ownership = Ownership()
    ownership.claim(LEARNER, 0, (2, 1))
    changelog = TABLES[keys.ATTEMPTS][1]
    ownership.expected[(changelog, 0)] = 0
    zombie_key = b"a/acme/l9/a9"
    log.append(changelog, 0, [(zombie_key, b'{"old": true}')], epoch_header((1, 1)))

    def group() -> DurableBatch:
        batch = DurableBatch(state, log, ownership)
        batch.put(keys.ATTEMPTS, 0, b"a/acme/l1/a1", {"launched_at": "2026-02-10T10:00:00+00:00"})
        return batch

    with pytest.raises(RuntimeError, match="the reader broke"):
        asyncio.run(group().flush())
    asyncio.run(group().flush())  # the group applied again

    last = [r for r in log.records(changelog, 0) if r.key == zombie_key][-1]
    assert last.epoch == (2, 1), "the deposed owner's record is still the key's last"
    assert ownership.zombies_repaired == 1
