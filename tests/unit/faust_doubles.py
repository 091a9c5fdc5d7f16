"""What the agents' loop (streams/worker/agents/loop.py) asks of faust's streams, messages and
flow control, for the tests that pin its behaviour without a broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace


@dataclass(eq=False)
class Message:
    partition: int
    offset: int
    key: bytes | None = b"k"
    value: bytes | None = b"{}"
    topic: str = "licenses"
    timestamp: float = 1.0


@dataclass(eq=False)
class Event:
    message: Message


def events(*offsets: int) -> list[list[Event]]:
    """One group per offset, all of partition 0."""
    return [[Event(Message(0, offset))] for offset in offsets]


class Flow:
    """faust's flow control: off from the start of a revocation until the recovery after it."""

    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active


class Stream:
    """`noack_take` hands out the groups in order, each tracked as unacknowledged the moment it
    is taken (as faust's passive consumption does); `ack` records the offsets acknowledged."""

    should_stop = False

    def __init__(self, groups: list[list[Event]], flow: Flow | None = None) -> None:
        self.groups = groups
        self.acked: list[int] = []
        self.flow = flow or Flow()
        self.app = SimpleNamespace(
            consumer=SimpleNamespace(_unacked_messages=set()), flow_control=self.flow
        )

    async def noack_take(self, max_events: int, within: float) -> AsyncIterator[list[Event]]:
        for group in self.groups:
            for event in group:
                self.app.consumer._unacked_messages.add(event.message)
            yield group

    async def ack(self, event: Event) -> None:
        self.acked.append(event.message.offset)
