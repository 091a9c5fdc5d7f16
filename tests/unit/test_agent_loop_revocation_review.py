"""A group whose flush keeps failing is not retried on through a revocation (a review of
537de8d): faust's revocation waits, without a timeout, until every event it handed out is
acknowledged (`Consumer.wait_empty`), so a group retried until it is durable held the whole
consumer group's rebalance for as long as the failure lasted. Before, the agent died and
faust's revocation went on. Now the group is left unacknowledged for the partition's next owner,
as faust's own streams drop what they would hand out while its flow control is suspended."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.stages.store import Record
from streams.worker.agents import loop
from tests.unit.faust_doubles import Event as _Event
from tests.unit.faust_doubles import Message as _Message
from tests.unit.faust_doubles import Stream as _Stream


class _Batch:
    def __init__(self, stream: _Stream) -> None:
        self.stream = stream

    def savepoint(self) -> int:
        return 0

    def rollback(self, mark: int) -> None:
        pass

    async def flush(self) -> None:
        self.stream.flow.active = False  # a rebalance begins while the group fails
        raise RuntimeError("the reader broke")


def test_a_failing_group_is_left_to_the_next_owner_when_a_revocation_begins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = _Stream([[_Event(_Message(0, 4))]])
    monkeypatch.setattr(loop, "new_batch", lambda *args: _Batch(stream))
    monkeypatch.setattr(loop, "RETRY_FIRST_S", 0.0)
    monkeypatch.setattr(loop, "RETRY_MAX_S", 0.0)

    async def handle(batch: Any, record: Record) -> None:
        pass

    def give_up(batch: Any, record: Record, exc: BaseException) -> None:
        raise AssertionError(f"{record} was given up: {exc!r}")

    async def scenario() -> None:
        await asyncio.wait_for(loop.run_durably(stream, "ingest-licenses", handle, give_up), 2)  # type: ignore[arg-type]

    asyncio.run(scenario())  # before: retried until the timeout (the revocation waits on it)
    assert stream.acked == []
    assert not stream.app.consumer._unacked_messages  # faust's wait_empty can end
