"""The agents' loop leaves events of partitions it does not own unacknowledged and not waited
for (streams/worker/agents/loop.py).

Found by a clean-clone CI run: a worker whose first takeover was refused (the group was
rebalancing as a second worker joined) left its events unacknowledged. faust's revocation
waits until every message it handed out is acknowledged or garbage (`Consumer.wait_empty`);
the loop's variable held the last group of each agent, and faust's stream holds the last event
it handed out, while no next one comes during a rebalance: the worker hung for good.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator
from typing import Any

from streams.stages.store import LEARNER, Fenced
from streams.worker.agents.loop import run_durably
from streams.worker.app import ownership
from tests.unit.faust_doubles import Event, Message


class Consumer:
    def __init__(self) -> None:
        self._unacked_messages: weakref.WeakSet[Message] = weakref.WeakSet()


class App:
    def __init__(self) -> None:
        self.consumer = Consumer()


class RebalancingStream:
    """One group of events, then nothing more (a rebalance paused the partitions), like faust's
    `noack_take`: it drops its own buffer once the group was taken."""

    def __init__(self, events: list[Event]) -> None:
        self._events = events
        self.acked: list[Event] = []
        self.waiting = asyncio.Event()
        self.app = App()
        self.last_handed_out = events[-1]  # as faust's stream keeps it
        for event in events:
            self.app.consumer._unacked_messages.add(event.message)

    async def noack_take(self, max_events: int, within: float) -> AsyncIterator[list[Event]]:
        buffer, self._events = self._events, []
        try:
            yield list(buffer)
        finally:
            buffer.clear()
        self.waiting.set()
        await asyncio.Event().wait()  # no next group during the rebalance

    async def ack(self, event: Event) -> None:
        self.acked.append(event)


def test_events_of_unowned_partitions_are_left_unacknowledged_and_not_waited_for() -> None:
    ownership.release(LEARNER)  # a refused takeover: nothing owned
    events = [Event(Message(partition, 1, topic="learner-commands")) for partition in range(3)]
    refs = [weakref.ref(event) for event in events]
    stream = RebalancingStream(events)
    del events

    async def scenario() -> None:
        loop = asyncio.create_task(
            run_durably(stream, "learners", _never, _never, owner=LEARNER)  # type: ignore[arg-type]
        )
        await asyncio.wait_for(stream.waiting.wait(), 5)
        gc.collect()
        alive = [ref() for ref in refs if ref() is not None]
        waited_for = list(stream.app.consumer._unacked_messages)
        loop.cancel()
        assert alive == [stream.last_handed_out], "the loop keeps no event itself"
        assert not waited_for, f"faust's revocation would wait for {len(waited_for)} messages"

    asyncio.run(scenario())
    assert stream.acked == []


async def _never(*args: Any) -> None:
    raise AssertionError("an event of a partition this worker does not own was applied")


def test_a_fenced_group_is_left_and_the_stage_gives_its_partitions_up() -> None:
    """A flush that finds this process deposed: the group is left to the new owner, and the
    stage gives up every partition (faust would commit an acknowledged offset past a single
    unacknowledged one, so later events of the partition must be left too)."""
    events = [Event(Message(partition, 5, topic="learner-commands")) for partition in range(2)]
    stream = RebalancingStream(events)
    gave_up: list[bool] = []

    async def deposed(*args: Any) -> None:
        raise Fenced("an owner with a newer epoch wrote after this one")

    async def give_up_partitions() -> None:
        gave_up.append(True)

    async def scenario() -> None:
        loop = asyncio.create_task(
            run_durably(
                stream,  # type: ignore[arg-type]
                "ingest-licenses",
                deposed,
                _never,  # type: ignore[arg-type]
                on_fenced=give_up_partitions,
            )
        )
        await asyncio.wait_for(stream.waiting.wait(), 5)
        await asyncio.sleep(0)
        waited_for = list(stream.app.consumer._unacked_messages)
        loop.cancel()
        assert not waited_for

    asyncio.run(scenario())
    assert stream.acked == []
    assert gave_up == [True]
