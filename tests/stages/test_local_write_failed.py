"""A local table write that fails after its changelog was acknowledged (a full disk) is told
apart from every other failure of a flush: the worker stops on it (streams/worker/agents/loop.py)
instead of applying the batch again over tables it may have half written."""

from __future__ import annotations

import asyncio

import pytest

from schemas import topics
from streams.stages import keys
from streams.stages.batch import DurableBatch
from streams.stages.memory import MemoryLog, MemoryState
from streams.stages.ownership import Ownership
from streams.stages.store import LEARNER, TENANT, LocalWriteFailed


class DiskFull(MemoryState):
    """Writes the attempts, then fails on the next table, as RocksDB does when the disk fills."""

    def apply(self, table, partition, writes, offset, fence) -> None:  # type: ignore[no-untyped-def]
        if table != keys.ATTEMPTS:
            raise OSError(28, "No space left on device")
        super().apply(table, partition, writes, offset, fence)


def test_a_local_write_that_fails_part_way_is_a_local_write_failure() -> None:
    state = DiskFull()
    for table in (keys.ATTEMPTS, keys.LEARNER_STATE):
        state.partition(table, 0)
    ownership = Ownership()
    ownership.claim(LEARNER, 0, (1, 0))
    batch = DurableBatch(state, MemoryLog(1), ownership)
    counted: list[str] = []
    batch.put(keys.ATTEMPTS, 0, b"a/l1/a1", {"launched_at": "2026-02-10T10:00:00+00:00"})
    batch.put(keys.LEARNER_STATE, 0, b"m/a/l1", {"2026-01-01": [1.0, 1.0]})
    batch.on_durable(lambda: counted.append("joined"))

    with pytest.raises(LocalWriteFailed, match="No space left on device"):
        asyncio.run(batch.flush())
    assert counted == []  # the counters were not told: only a takeover can rebuild them
    assert state.get_many(keys.ATTEMPTS, 0, [b"a/l1/a1"]) != [None]  # half written


class OutputsFail(MemoryLog):
    """Takes the changelog, then fails on the outputs (an error Kafka's client would not raise:
    those are retried inside the send)."""

    async def send(self, groups, headers=None):  # type: ignore[no-untyped-def]
        if any(topic == topics.ACTIVE_LEARNER_COUNTS for topic, _ in groups):
            raise RuntimeError("the producer broke")
        return await super().send(groups, headers)


def tenant_batch(log: MemoryLog, writes: bool) -> DurableBatch:
    state = MemoryState()
    state.partition(keys.TENANT_STATE, 0)
    ownership = Ownership()
    ownership.claim(TENANT, 0, (1, 0))
    batch = DurableBatch(state, log, ownership, outputs_first=False)
    if writes:
        batch.put(keys.TENANT_STATE, 0, b"pub/acme/2026-01-01", {"active_learners": 3})
    batch.emit(topics.ACTIVE_LEARNER_COUNTS, b"acme/2026-01-01", b"{}", 0)
    return batch


def test_the_tenant_stages_outputs_failing_after_its_state_is_a_local_write_failure() -> None:
    """Its state is written first: applied again, the batch would find the count published in
    its state and send nothing; a takeover sends the truth again."""
    with pytest.raises(LocalWriteFailed, match="the producer broke"):
        asyncio.run(tenant_batch(OutputsFail(1), writes=True).flush())


def test_outputs_failing_before_any_local_write_may_be_applied_again() -> None:
    with pytest.raises(RuntimeError, match="the producer broke") as failed:
        asyncio.run(tenant_batch(OutputsFail(1), writes=False).flush())
    assert not isinstance(failed.value, LocalWriteFailed)
