"""A local table write that fails after its changelog was acknowledged (a full disk) is told
apart from every other failure of a flush: the worker stops on it (streams/worker/agents/loop.py)
instead of applying the batch again over tables it may have half written."""

from __future__ import annotations

import asyncio

import pytest

from streams.stages import keys
from streams.stages.batch import DurableBatch
from streams.stages.memory import MemoryLog, MemoryState
from streams.stages.ownership import Ownership
from streams.stages.store import LEARNER, LocalWriteFailed


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
