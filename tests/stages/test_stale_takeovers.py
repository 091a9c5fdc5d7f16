"""A takeover that a later rebalance overtook stops at its next send or write.

faust does not cancel the tables' on_recover callbacks when a rebalance interrupts them
(streams/worker/takeovers.py), so a takeover's flush that waits for Kafka may resume after a
newer takeover of the same process restored and claimed the partitions. A takeover's batch
(`DurableBatch.stop_when`) then raises `Fenced` before it writes anything more: no local row, no
move of the process's lineage, no further record (streams/stages/takeover_steps.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from schemas import topics
from streams.stages import keys
from streams.stages.batch import DurableBatch
from streams.stages.learners import LearnerStage
from streams.stages.memory import MemoryLog, MemoryState
from streams.stages.ownership import Ownership
from streams.stages.store import LEARNER, TABLES, Fenced, Headers, Pair, TopicPartition
from streams.stages.takeover_steps import take_over_learners

TABLE = keys.LEARNER_STATE
CHANGELOG = (TABLES[TABLE][1], 0)
ADA = keys.membership("acme", "ada")


class RebalancingLog(MemoryLog):
    """Kafka in memory, where a rebalance begins while the `nth` send waits for its acks."""

    def __init__(self, nth: int) -> None:
        super().__init__(1)
        self.nth = nth
        self.sends = 0
        self.rebalanced = False

    async def send(
        self,
        groups: Mapping[TopicPartition, Sequence[Pair]],
        headers: Mapping[TopicPartition, Headers] | None = None,
    ) -> dict[TopicPartition, tuple[int, int]]:
        acked = await super().send(groups, headers)
        self.sends += 1
        if self.sends == self.nth:
            self.rebalanced = True
        return acked


def takeover_batch(log: RebalancingLog) -> tuple[DurableBatch, MemoryState, Ownership]:
    state = MemoryState()
    ownership = Ownership()
    ownership.claim(LEARNER, 0, (1, 1))
    batch = DurableBatch(state, log, ownership)
    batch.stop_when(lambda: log.rebalanced, "learner takeover of generation 1")
    return batch, state, ownership


def test_a_takeover_s_batch_sends_nothing_once_a_later_rebalance_began() -> None:
    log = RebalancingLog(nth=0)
    batch, state, ownership = takeover_batch(log)
    log.rebalanced = True
    batch.put(TABLE, 0, ADA, {"2026-01-01": [1, 2]})
    batch.emit(topics.LEARNER_COMMANDS, b"check", b"{}", 0)
    with pytest.raises(Fenced, match="learner takeover of generation 1"):
        asyncio.run(batch.flush())
    assert log.topics == {}
    assert state.get_many(TABLE, 0, [ADA]) == [None]
    assert ownership.expected == {}


def test_a_rebalance_during_the_changelog_send_leaves_the_local_rows_and_lineage_alone() -> None:
    log = RebalancingLog(nth=1)  # the changelog's send: a learner batch without outputs
    batch, state, ownership = takeover_batch(log)
    ownership.expected[CHANGELOG] = 0
    batch.put(TABLE, 0, ADA, {"2026-01-01": [1, 2]})
    with pytest.raises(Fenced):
        asyncio.run(batch.flush())
    # the record is out (as a deposed owner's late write: the newer owner's lineage finds it),
    # but neither the local row nor where this process expects its next record moved
    assert len(log.records(*CHANGELOG)) == 1
    assert state.get_many(TABLE, 0, [ADA]) == [None]
    assert ownership.expected[CHANGELOG] == 0


def test_a_rebalance_during_the_outputs_send_stops_before_the_changelog() -> None:
    log = RebalancingLog(nth=1)  # a learner batch sends its outputs first
    batch, state, _ = takeover_batch(log)
    batch.put(TABLE, 0, ADA, {"2026-01-01": [1, 2]})
    batch.emit(topics.LEARNER_COMMANDS, b"check", b"{}", 0)
    with pytest.raises(Fenced):
        asyncio.run(batch.flush())
    assert log.records(*CHANGELOG) == []
    assert state.get_many(TABLE, 0, [ADA]) == [None]


def test_a_batch_that_is_no_takeover_s_flushes_as_before() -> None:
    log = RebalancingLog(nth=1)
    state = MemoryState()
    ownership = Ownership()
    ownership.claim(LEARNER, 0, (1, 1))
    batch = DurableBatch(state, log, ownership)
    batch.put(TABLE, 0, ADA, {"2026-01-01": [1, 2]})
    asyncio.run(batch.flush())
    assert state.get_many(TABLE, 0, [ADA]) == [b'{"2026-01-01":[1,2]}']


class OvertakenLog(MemoryLog):
    """Kafka in memory, where a rebalance (generation 2) begins while the takeover of
    generation 1 reads the partitions' end offsets."""

    def __init__(self) -> None:
        super().__init__(1)
        self.generation = 1

    async def end_offset(self, topic: str, partition: int) -> int:
        self.generation = 2
        return await super().end_offset(topic, partition)


def test_a_takeover_overtaken_while_reading_end_offsets_moves_and_claims_nothing() -> None:
    log = OvertakenLog()
    ownership = Ownership()
    ownership.expected[CHANGELOG] = 7  # the newer takeover's
    stage = LearnerStage(1)

    async def still_member(generation: int) -> bool:
        return log.generation == generation

    with pytest.raises(Fenced, match="learner takeover of generation 1"):
        asyncio.run(
            take_over_learners(
                stage,
                DurableBatch(MemoryState(), log, ownership),
                log,
                [0],
                1,
                still_member,
                lambda generation: log.generation != generation,
            )
        )
    assert ownership.expected == {CHANGELOG: 7}
    assert ownership.partitions(LEARNER) == []
    assert log.topics.get(CHANGELOG[0], {}).get(0, []) == []
    assert not stage.counters.partitions()
