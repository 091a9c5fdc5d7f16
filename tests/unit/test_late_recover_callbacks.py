"""An on_recover callback that starts late takes over its own recovery's partitions, or nothing.

faust runs each table's on_recover callbacks one after the other, in a task of its own per
table, and does not cancel them when a later rebalance interrupts the recovery. So a takeover
whose table's earlier callback waited on Kafka (the learner table's `seek_fresh_partitions`)
may start after a newer recovery ended. Reading the newer recovery's `Restored` there would
make it a second takeover of that generation beside the newer one's own (helper-123); it reads
its own recovery's (`RESTORED`, streams/worker/recovery.py), superseded by then: nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.tables.recovery import Recovery
from faust.types import TP

from streams.worker import takeovers
from streams.worker.recovery import BulkRecovery


class Table:
    name = "learner-state"


TABLE = Table()


class FakeRecovery(BulkRecovery):
    def __init__(self) -> None:  # no app, no consumer: only what the callbacks read
        self._generation_id = 0
        self.actives_for_table = {}


def test_a_callback_that_starts_late_reads_its_own_recovery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recovery = FakeRecovery()
    monkeypatch.setattr(takeovers, "_recovery", lambda: recovery)
    monkeypatch.setattr(takeovers, "superseded", lambda g: g != recovery._generation_id)
    plans: dict[int, Any] = {}
    first_may_go_on = asyncio.Event()

    async def callbacks(generation: int) -> None:
        # the table's callbacks, in order: the one before the takeover waits on Kafka (in the
        # first recovery, until the second one's callbacks are done)
        if generation == 1:
            await first_may_go_on.wait()
        plans[generation] = takeovers.restored(TABLE)  # type: ignore[arg-type]

    async def faust_on_recovery_completed(self: Recovery, generation_id: int = 0) -> None:
        # faust: each table's callbacks in a task of its own (`ensure_future`), then waits
        await asyncio.wait([asyncio.ensure_future(callbacks(generation_id))])

    monkeypatch.setattr(Recovery, "on_recovery_completed", faust_on_recovery_completed)

    async def rebalances() -> None:
        recovery._generation_id = 1
        recovery.actives_for_table = {TABLE: {TP("learner-state-changelog", 0)}}
        first = asyncio.ensure_future(recovery.on_recovery_completed(1))
        await asyncio.sleep(0)  # its callbacks have started and wait
        # a later rebalance: faust moves on to its recovery (the first one's callbacks go on)
        recovery._generation_id = 2
        recovery.actives_for_table = {TABLE: {TP("learner-state-changelog", 1)}}
        await recovery.on_recovery_completed(2)
        first_may_go_on.set()
        await first

    asyncio.run(rebalances())
    assert plans[2] == (2, [1])
    assert plans[1] is None  # not (2, [1]): the newer recovery's, taken over twice
