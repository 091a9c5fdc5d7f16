"""A deposed owner never outranks a legitimate one: the takeover asks the group coordinator.

Found by a review (2026-12-01) of the takeover rule of the time, which chose its epoch from what
it read alone: in each sequence below a deposed owner wrote an epoch above a legitimate owner's,
so the legitimate owner was `Fenced` and the deposed one took its records for a zombie's and
wrote their keys again with its own values, losing committed work. Now a takeover writes its
epoch only after the coordinator confirmed its generation (`StillMember`), after everything it
read: a deposed takeover takes nothing over, and a confirmed one counts on from the highest
counter it read.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from schemas import topics
from streams.stages import keys
from streams.stages.batch import DurableBatch, take_over
from streams.stages.memory import MemoryLog, MemoryState
from streams.stages.ownership import Ownership
from streams.stages.store import LEARNER, TENANT, Epoch, Fenced, epoch_header

CHANGELOG = {LEARNER: topics.LEARNER_STATE_CHANGELOG, TENANT: topics.TENANT_STATE_CHANGELOG}
TABLE = {LEARNER: keys.LEARNER_STATE, TENANT: keys.TENANT_STATE}


class Group:
    """The consumer group as its coordinator sees it: the current generation (and its life:
    a group deleted and made again starts its generations at 1, with new member ids)."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.life = 0
        self.after_answer: list[int] = []  # generations the group moves to right after answers

    def member(self, life: int | None = None):  # type: ignore[no-untyped-def]
        joined = self.life if life is None else life

        async def still_member(generation: int) -> bool:
            answer = joined == self.life and generation == self.generation
            if self.after_answer:
                self.generation = self.after_answer.pop(0)  # a rebalance right after
            return answer

        return still_member

    def made_again(self) -> None:
        self.life += 1
        self.generation = 1


def write_epoch(log: MemoryLog, stage: str, epoch: Epoch) -> None:
    log.append(CHANGELOG[stage], 0, [(keys.EPOCH, orjson.dumps(list(epoch)))], epoch_header(epoch))


def restore(log: MemoryLog, stage: str) -> MemoryState:
    """A restore of the whole changelog with the fence rule."""
    state, fence, value, last = MemoryState(), (0, 0), None, -1
    for record in log.records(CHANGELOG[stage], 0):
        last = record.offset
        if record.epoch >= fence:
            fence, value = record.epoch, record.value
    state.apply(TABLE[stage], 0, {keys.EPOCH: value}, last, fence)
    return state


def take(state: MemoryState, log: MemoryLog, stage: str, generation: int, member) -> Epoch:  # type: ignore[no-untyped-def]
    batch = DurableBatch(state, log, Ownership())
    return asyncio.run(take_over(batch, stage, [0], generation, member))[0]


def last_epoch(log: MemoryLog, stage: str) -> Epoch:
    return [r.epoch for r in log.records(CHANGELOG[stage], 0) if r.key == keys.EPOCH][-1]


@pytest.mark.parametrize("stage", [LEARNER, TENANT])
def test_a_deposed_owner_whose_restore_read_its_successors_takeover_takes_nothing(
    stage: str,
) -> None:
    log, group = MemoryLog(1), Group(6)
    write_epoch(log, stage, (1, 1))
    successor = take(restore(log, stage), log, stage, 6, group.member())
    assert successor == (2, 6)
    slow = restore(log, stage)  # a generation-5 worker's restore, slow: it read (2, 6)
    with pytest.raises(Fenced):
        take(slow, log, stage, 5, group.member())
    assert last_epoch(log, stage) == (2, 6), "nothing of the deposed takeover was written"


@pytest.mark.parametrize("stage", [LEARNER, TENANT])
def test_a_chain_of_two_deposed_owners_stays_below_the_legitimate_one(stage: str) -> None:
    """D1 (generation 3) was confirmed, then paused; its takeover landed after the legitimate
    owner (generation 6) restored. D2 (generation 4) restored D1's takeover: the coordinator
    refuses it, and D1's epoch is below the legitimate owner's."""
    log, group = MemoryLog(1), Group(3)
    write_epoch(log, stage, (1, 1))
    legit, d1 = restore(log, stage), restore(log, stage)
    group.after_answer = [6]  # D1 is confirmed, then the group moves on to generation 6
    first = take(d1, log, stage, 3, group.member())
    assert first == (2, 3)
    with pytest.raises(Fenced):
        take(restore(log, stage), log, stage, 4, group.member())
    mine = take(legit, log, stage, 6, group.member())
    assert mine > first, (mine, first)
    assert last_epoch(log, stage) == mine


@pytest.mark.parametrize("stage", [LEARNER, TENANT])
def test_an_old_member_of_a_group_made_again_takes_nothing(stage: str) -> None:
    log, group = MemoryLog(1), Group(40)
    write_epoch(log, stage, (4, 40))
    old = restore(log, stage)  # a member of generation 40 restores, then pauses
    old_member = group.member()
    group.made_again()  # the group is deleted and made again: generation 1, new members
    new = take(restore(log, stage), log, stage, 1, group.member())
    assert new == (5, 1), "an earlier life's counter is counted on from"
    with pytest.raises(Fenced):
        take(old, log, stage, 40, old_member)
    assert last_epoch(log, stage) == (5, 1)


def test_a_learner_takeover_counts_above_what_it_caught_up_with() -> None:
    """A group made again: the new owner (generation 1) restored (4, 39), then an earlier
    life's takeover (5, 40) landed before its own. Confirmed by the coordinator, it counts on
    from the highest counter it read, so its epoch is above its own fence."""
    log, group = MemoryLog(1), Group(1)
    write_epoch(log, LEARNER, (4, 39))
    mine = restore(log, LEARNER)
    write_epoch(log, LEARNER, (5, 40))
    epoch = take(mine, log, LEARNER, 1, group.member())
    assert epoch == (6, 1)
    assert epoch > (5, 40), "above everything it read: its own writes are not below its fence"


def test_the_counter_is_the_highest_a_changelog_shows() -> None:
    """The stored epoch key can say less than the fence (a deposed owner's takeover record of
    the same key compacted the real one away): the fence's counter is counted on from."""
    log, group = MemoryLog(1), Group(7)
    state = MemoryState()
    state.apply(keys.TENANT_STATE, 0, {keys.EPOCH: orjson.dumps([3, 4])}, 0, (5, 6))
    log.append(CHANGELOG[TENANT], 0, [(keys.EPOCH, orjson.dumps([3, 4]))], epoch_header((3, 4)))
    assert take(state, log, TENANT, 7, group.member()) == (6, 7)
