"""A review of this session's worker glue (2026-12-02): revocations, the launch reader's stop, and
the read-back consumer. Each test failed on the code before its fix.

A flush that Kafka refuses stops with Fenced once a revocation begins; the agents without an
owner (ingest-licenses, ingest-deletions, ingest-groups) then went on with the next group.

faust's `noack_take` consumes passively: while a group is applied, the stream has already taken
the next event (tracked as unacknowledged, held in `add_to_buffer` until the group is done) and
yields it as the next group. When a revocation begins, the group whose send Kafka refuses now
stops with Fenced and is left unacknowledged; the ingest agents have no owner check and no
`on_fenced`, so the held event of the same partition is applied and ACKED during the
revocation. faust's Consumer.on_partitions_revoked has already popped the partition's
`_committed_offset` (transport/consumer.py:657-662), so `_new_offset` commits past the left
group (and aiokafka keeps the old assignment during the revoke callback, so faust's commit
timer's `_commit_offsets` still sends it). Variant: when Kafka still refuses, the held group's
send began during the revocation (`revoking_at_start`) and is retried without end: the
revocation waits for it (`wait_empty`), the hold 0620714 meant to remove.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP

from streams.stages.store import Record
from streams.worker import state
from streams.worker.agents import launch_reader, loop
from streams.worker.app import settings
from tests.unit.faust_doubles import Flow, Stream, events


class _Builder:
    def append(self, **kwargs: Any) -> object:
        return object()

    def close(self) -> None:  # (the log closes a batch before it hands it over)
        pass


class _Producer:
    """Refuses every send until `recovers_at` calls (a leader gone), flipping faust's flow
    control off (a revocation begins) at its second refusal."""

    def __init__(self, flow: Flow, recovers_at: int | None) -> None:
        self.flow, self.recovers_at, self.calls = flow, recovers_at, 0

    def create_batch(self) -> _Builder:
        return _Builder()

    async def send_batch(self, batch: _Builder, topic: str, *, partition: int) -> Any:
        self.calls += 1
        if self.calls == 2:
            self.flow.active = False  # faust: flow_control.suspend() in _on_partitions_revoked
        if self.recovers_at is None or self.calls < self.recovers_at:
            raise KafkaTimeoutError()
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(SimpleNamespace(offset=100))
        return fut


class _Batch:
    def __init__(self, kafka_log: state.KafkaLog) -> None:
        self.kafka_log = kafka_log

    def savepoint(self) -> int:
        return 0

    def rollback(self, mark: int) -> None:
        pass

    async def flush(self) -> None:
        await self.kafka_log.send({("tenant-commands", 0): [(b"acme", b"{}")]})


def _run(recovers_at: int | None, monkeypatch: pytest.MonkeyPatch) -> Stream:
    monkeypatch.setattr(state, "RETRY_FIRST_S", 0.0)
    monkeypatch.setattr(state, "RETRY_MAX_S", 0.0)
    flow = Flow()
    stream = Stream(events(4, 5), flow)  # the second: taken while the first is applied
    producer = _Producer(flow, recovers_at)
    kafka_log = state.KafkaLog(settings, lambda: producer, lambda: 7, lambda: not flow.active)
    monkeypatch.setattr(loop, "new_batch", lambda *a: _Batch(kafka_log))

    async def handle(batch: Any, record: Record) -> None:
        pass

    def give_up(batch: Any, record: Record, exc: BaseException) -> None:
        raise AssertionError(exc)

    async def scenario() -> None:
        await asyncio.wait_for(
            loop.run_durably(stream, "ingest-licenses", handle, give_up),  # type: ignore[arg-type]
            2,
        )

    asyncio.run(scenario())
    return stream


def test_faust_commits_past_the_left_group_once_the_held_event_is_acked() -> None:
    """Library evidence: during the revocation faust popped `_committed_offset[tp]`
    (transport/consumer.py:657-662) and wait_empty() ends with commit_and_end_transactions()
    (:889-890): with _acked[tp] == [5], the commit is 6 and the license at offset 4 is skipped."""
    tp = TP("licenses", 0)
    fake = SimpleNamespace(
        _acked={tp: [5]}, _acked_index={tp: {5}}, _gap={tp: None}, _committed_offset={tp: None}
    )
    assert FaustConsumer._new_offset(fake, tp) == 6


def test_no_event_after_a_group_left_by_a_revocation_is_acknowledged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Offset 4 is left by Fenced; offset 5, taken meanwhile, was applied and acknowledged
    after it, and faust committed past the left license."""
    stream = _run(recovers_at=3, monkeypatch=monkeypatch)
    assert stream.acked == []
    assert not stream.app.consumer._unacked_messages  # faust's wait_empty can end


def test_the_held_event_does_not_hold_the_revocation_while_kafka_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The held group's send, begun during the revocation, was retried until the generation
    changed, while faust's revocation waited for it."""
    stream = _run(recovers_at=None, monkeypatch=monkeypatch)
    assert stream.acked == []


# -- the launch reader stops during a rebalance of its group ----------------------------------


class _StoppingCoordinator:
    """stop() awaits the coordination task, as aiokafka's GroupCoordinator.close() does."""

    def __init__(self) -> None:
        self.coordination: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        if self.coordination is not None and not self.coordination.done():
            await self.coordination


def test_the_launch_reader_stops_during_a_rebalance_of_its_group() -> None:
    """aiokafka's consumer.stop() awaits the coordination task (GroupCoordinator.close), which
    may be in on_partitions_revoked waiting for the reader's lock: on_stop held that lock while
    it stopped the consumer, and never returned."""

    async def scenario() -> None:
        reader = launch_reader.LaunchReader()
        consumer = _StoppingCoordinator()
        reader.consumer = consumer  # type: ignore[assignment]
        listener = launch_reader._Rebalance(reader)

        async def batch_in_flight() -> None:
            async with reader.lock:
                await asyncio.sleep(0.2)

        flight = asyncio.create_task(batch_in_flight())
        await asyncio.sleep(0)
        stopping = asyncio.create_task(reader.on_stop())  # waits for the batch (FIFO first)
        await asyncio.sleep(0)
        # another worker leaves the launch group meanwhile: the coordination routine of this
        # consumer runs _on_join_prepare -> on_partitions_revoked, queued behind on_stop
        consumer.coordination = asyncio.create_task(listener.on_partitions_revoked(set()))
        await flight
        await asyncio.wait_for(stopping, 3.0)

    asyncio.run(scenario())


# -- a read back that fails or is cancelled pauses its partition --------------------------------


class _CancelledReader:
    def __init__(self) -> None:
        self.paused: list[Any] = []

    def assign(self, tps: list[Any]) -> None:
        pass

    def seek(self, tp: Any, offset: int) -> None:
        pass

    async def position(self, tp: Any) -> int:
        return 0

    async def getmany(self, *tps: Any, **kwargs: Any) -> Any:
        raise asyncio.CancelledError()  # the task reading is cancelled mid-fetch

    def pause(self, tp: Any) -> None:
        self.paused.append(tp)


def test_a_cancelled_read_pauses_its_partition() -> None:
    kafka_log = state.KafkaLog(settings, lambda: None)
    consumer = _CancelledReader()
    kafka_log._reader = consumer  # type: ignore[assignment]

    async def scenario() -> None:
        with pytest.raises(asyncio.CancelledError):
            await kafka_log.read("learner-commands", 3, 0, 10)

    asyncio.run(scenario())
    assert consumer.paused, "a read cancelled mid-fetch leaves its partition paused too"
