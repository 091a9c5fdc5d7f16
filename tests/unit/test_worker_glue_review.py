"""The worker glue against what faust-streaming 0.15, aiokafka 0.14 and mode really do (a review).

- faust commits an acknowledged offset past unacknowledged ones before it: past a single one,
  and past any number when the partition's committed offset is 0 or none
  (`Consumer._new_offset`; `perform_seek` stores a committed 0 as none). So a group an agent
  never acknowledges must never be followed by acknowledged groups of its partition.
- An exception that escapes an agent ends it; faust starts the actor again
  (`Agent._execute_actor`) and the next groups are acknowledged: the agents' loop must apply a
  failed group again instead of dying (`streams/worker/agents/loop.py`).
- aiokafka raises some send failures from `send_batch` itself, not through the batch's future
  (`MessageAccumulator.add_batch`: KafkaTimeoutError; `_wait_on_metadata`: unknown topic):
  `KafkaLog.send` must retry those like a failed future (`streams/worker/state.py`).
- aiokafka's consumers reset an out-of-range position to "latest" by default: a read back of a
  range whose first records were deleted skipped the rest of the range.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP

from streams.stages.store import LocalWriteFailed, Record
from streams.worker import raw_fetch, state
from streams.worker.agents import loop
from streams.worker.app import settings
from tests.unit.faust_doubles import Stream, events

# -- faust's commit rule (evidence: these pin the library's behaviour the glue must live with) --


def _consumer(committed: int | None, acked: list[int]) -> Any:
    tp = TP("learner-commands", 0)
    fake = SimpleNamespace(
        _acked={tp: list(acked)},
        _acked_index={tp: set(acked)},
        _gap={tp: None},
        _committed_offset={tp: committed},
    )
    return fake, tp


def test_faust_commits_past_one_unacknowledged_event() -> None:
    fake, tp = _consumer(committed=4, acked=[5, 6])  # offset 4 never acknowledged
    assert FaustConsumer._new_offset(fake, tp) == 7


def test_faust_commits_past_any_number_when_nothing_was_committed() -> None:
    for committed in (None, 0):  # perform_seek stores a committed 0 as None
        fake, tp = _consumer(committed=committed, acked=[5, 6])  # 0..4 never acknowledged
        assert FaustConsumer._new_offset(fake, tp) == 7


def test_faust_waits_for_a_longer_gap_after_a_commit() -> None:
    fake, tp = _consumer(committed=3, acked=[5, 6])  # 3 and 4 never acknowledged
    assert FaustConsumer._new_offset(fake, tp) is None


# -- the agents' loop: a group whose flush raised is applied again, never passed over ----------


@dataclass
class _Batch:
    """What `apply_events` needs of a batch; its first flush fails as Kafka can make it."""

    flushes: list[int] = field(default_factory=list)
    fail_first: list[bool] = field(default_factory=lambda: [True])

    def savepoint(self) -> int:
        return 0

    def rollback(self, mark: int) -> None:
        pass

    async def flush(self) -> None:
        if self.fail_first and self.fail_first.pop():
            raise KafkaTimeoutError()


def test_a_group_whose_flush_raised_is_applied_again_before_the_next_is_acknowledged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failing = [True]  # shared by every batch: the first flush of the run fails
    monkeypatch.setattr(loop, "new_batch", lambda *args: _Batch(fail_first=failing))
    monkeypatch.setattr(loop, "RETRY_FIRST_S", 0.0)
    handled: list[int] = []

    async def handle(batch: Any, record: Record) -> None:
        handled.append(record.offset)

    def give_up(batch: Any, record: Record, exc: BaseException) -> None:
        raise AssertionError(f"{record} was given up: {exc!r}")

    stream = Stream(events(4, 5))

    async def scenario() -> None:
        await asyncio.wait_for(loop.run_durably(stream, "ingest-licenses", handle, give_up), 5)  # type: ignore[arg-type]

    asyncio.run(scenario())
    assert handled == [4, 4, 5], "the failed group is applied again, then the next one"
    assert stream.acked == [4, 5], "offset 4 is acknowledged before 5: faust never skips it"


# -- KafkaLog.send: failures aiokafka raises from send_batch itself ------------------------------


class _Builder:
    def __init__(self) -> None:
        self.records = 0

    def append(self, **kwargs: Any) -> object:
        self.records += 1
        return object()

    def close(self) -> None:  # (the log closes a batch before it hands it over)
        pass


class _Producer:
    """send_batch raises KafkaTimeoutError once, as `MessageAccumulator.add_batch` does when the
    partition's previous batch did not drain within the producer's request timeout."""

    def __init__(self) -> None:
        self.calls = 0
        self.offset = 100

    def create_batch(self) -> _Builder:
        return _Builder()

    async def send_batch(self, batch: _Builder, topic: str, *, partition: int) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise KafkaTimeoutError()
        future = asyncio.get_running_loop().create_future()
        future.set_result(SimpleNamespace(offset=self.offset))
        self.offset += batch.records
        return future


def test_send_retries_a_failure_raised_by_send_batch_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(state, "RETRY_FIRST_S", 0.0)
    producer = _Producer()
    kafka_log = state.KafkaLog(settings, lambda: producer, lambda: 1)
    groups = {("learner-commands", 3): [(b"k1", b"v1"), (b"k2", b"v2")]}

    acked = asyncio.run(kafka_log.send(groups))

    assert acked == {("learner-commands", 3): (100, 101)}
    assert producer.calls == 2


class _RefusingProducer(_Producer):
    """send_batch fails every time (a partition whose leader is gone for long, an ACL)."""

    async def send_batch(self, batch: _Builder, topic: str, *, partition: int) -> Any:
        self.calls += 1
        raise KafkaTimeoutError()


def test_a_send_refused_on_gives_way_to_a_revocation(monkeypatch: pytest.MonkeyPatch) -> None:
    """faust's revocation waits for every event handed out and the generation changes only
    after it: a flush retried on through it would hold the whole group's rebalance. Once a
    revocation begins, the send stops with `Fenced` (its group is left to the next owner)."""
    monkeypatch.setattr(state, "RETRY_FIRST_S", 0.0)
    producer = _RefusingProducer()
    revoking = [False]

    def revocation_begins_at_the_third_try() -> bool:
        revoking[0] = revoking[0] or producer.calls >= 3
        return revoking[0]

    kafka_log = state.KafkaLog(
        settings, lambda: producer, lambda: 1, revocation_begins_at_the_third_try
    )
    groups = {("learner-commands", 3): [(b"k1", b"v1")]}

    with pytest.raises(state.Fenced, match="revoked"):
        asyncio.run(asyncio.wait_for(kafka_log.send(groups), 5))
    assert producer.calls == 3


def test_a_send_begun_during_a_revocation_keeps_its_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A timer's flush that begins while faust's flow control is off (the revocation does not
    wait for timers): its sends keep their retries (they stop when the generation changes)."""
    monkeypatch.setattr(state, "RETRY_FIRST_S", 0.0)
    producer = _Producer()  # fails once, then takes the batch
    kafka_log = state.KafkaLog(settings, lambda: producer, lambda: 1, lambda: True)
    groups = {("learner-state-changelog", 0): [(b"k1", b"v1")]}

    assert asyncio.run(kafka_log.send(groups)) == {("learner-state-changelog", 0): (100, 100)}
    assert producer.calls == 2


# -- reading back: a range whose first records were deleted --------------------------------------


class _Consumer:
    made: list[dict[str, Any]] = []

    def __init__(self, **kwargs: Any) -> None:
        _Consumer.made.append(kwargs)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def assign(self, tps: Any) -> None:
        pass

    def seek(self, tp: Any, offset: int) -> None:
        pass

    async def getmany(self, *tps: Any, timeout_ms: int = 0, max_records: int = 0) -> dict:
        return {}


def test_readers_go_on_from_the_first_record_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiokafka resets an out-of-range fetch position to `auto_offset_reset` (fetcher.py,
    OffsetOutOfRangeError), "latest" by default: the rest of the range would be skipped."""
    monkeypatch.setattr(state, "AIOKafkaConsumer", _Consumer)
    monkeypatch.setattr(raw_fetch, "AIOKafkaConsumer", _Consumer)
    monkeypatch.setattr(raw_fetch, "FETCH_TIMEOUT_S", 0.0)
    _Consumer.made.clear()

    async def scenario() -> None:
        await state.KafkaLog(settings, lambda: None)._consumer()
        await raw_fetch.fetch_raw(settings, "launches", 0, 7)

    asyncio.run(scenario())
    assert [made.get("auto_offset_reset") for made in _Consumer.made] == ["earliest", "earliest"]


def test_a_read_back_whose_consumer_cannot_start_answers_none_and_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A consumer whose start fails (the broker unreachable) leaves a client behind unless it
    is stopped; the read-back answers None (the dead letter goes without the raw record)
    instead of raising (helper-61's review)."""
    stopped: list[bool] = []

    class _CannotStart(_Consumer):
        async def start(self) -> None:
            raise KafkaConnectionError("Unable to bootstrap from localhost:1")

        async def stop(self) -> None:
            stopped.append(True)

    monkeypatch.setattr(raw_fetch, "AIOKafkaConsumer", _CannotStart)
    assert asyncio.run(raw_fetch.fetch_raw(settings, "launches", 0, 7)) is None
    assert stopped == [True]


def test_a_failed_local_write_stops_the_worker_instead_of_applying_the_group_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Applied again after a local write failed part-way, a group finds some tables written
    (its launches read as repeats) and leaves the partition's counters behind its tables until
    the next takeover: the worker stops, and its restart's takeover rebuilds them."""
    exits: list[int] = []

    class Exited(Exception):
        pass

    def exit_now(code: int) -> None:
        exits.append(code)
        raise Exited(code)  # (not SystemExit: asyncio.run would not return)

    class _FailingWrite(_Batch):
        async def flush(self) -> None:
            raise LocalWriteFailed("writing attempts/0 failed: IO error: No space left on device")

    monkeypatch.setattr(loop.os, "_exit", exit_now)
    monkeypatch.setattr(loop, "new_batch", lambda *args: _FailingWrite())
    handled: list[int] = []

    async def handle(batch: Any, record: Record) -> None:
        handled.append(record.offset)

    def give_up(batch: Any, record: Record, exc: BaseException) -> None:
        raise AssertionError(f"{record} was given up: {exc!r}")

    stream = Stream(events(4, 5))

    async def scenario() -> None:
        await asyncio.wait_for(loop.run_durably(stream, "learners", handle, give_up), 5)  # type: ignore[arg-type]

    with pytest.raises(Exited):
        asyncio.run(scenario())
    assert exits == [loop.EXIT_LOCAL_WRITE_FAILED]
    assert handled == [4] and stream.acked == []  # never applied again, never acknowledged


# -- the launch reader stops after the batch in flight --------------------------------------------


class _StoppingConsumer:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def stop(self) -> None:
        self.events.append("consumer stopped")


def test_the_launch_reader_stops_its_consumer_after_the_batch_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stopped under a batch, the consumer could not commit it and the next owner would route
    it again; stopping waits for it (and for no longer than STOP_WAIT_S)."""
    from streams.worker.agents import launch_reader

    async def scenario(batch_s: float) -> list[str]:
        events: list[str] = []
        reader = launch_reader.LaunchReader()
        reader.consumer = _StoppingConsumer(events)  # type: ignore[assignment]

        async def batch_in_flight() -> None:
            async with reader.lock:
                await asyncio.sleep(batch_s)
                events.append("batch committed")

        flight = asyncio.create_task(batch_in_flight())
        await asyncio.sleep(0)  # the batch holds the lock
        await reader.on_stop()
        flight.cancel()
        return events

    monkeypatch.setattr(launch_reader, "STOP_WAIT_S", 5.0)
    assert asyncio.run(scenario(0.05)) == ["batch committed", "consumer stopped"]
    monkeypatch.setattr(launch_reader, "STOP_WAIT_S", 0.05)
    assert asyncio.run(scenario(5.0)) == ["consumer stopped"], "a stuck batch does not hold it"


class _CoordinatedConsumer:
    """aiokafka's stop awaits the group coordination task, which may be in the rebalance
    listener's `on_partitions_revoked` (other workers of the launch group stopping too)."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.coordination: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        if self.coordination is not None:
            await self.coordination
        self.events.append("consumer stopped")


def test_a_stuck_batch_is_cancelled_so_that_the_consumer_can_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past STOP_WAIT_S the batch in flight (a send Kafka keeps refusing) is cancelled: its lock
    is what the revocation callback, and with it the consumer's stop, waits for (a review found
    the stop hanging for good)."""
    from streams.worker.agents import launch_reader

    async def scenario() -> list[str]:
        events: list[str] = []
        reader = launch_reader.LaunchReader()
        consumer = _CoordinatedConsumer(events)
        reader.consumer = consumer  # type: ignore[assignment]

        async def batch_in_flight() -> None:
            async with reader.lock:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    events.append("batch cancelled")
                    raise

        reader.reading = asyncio.create_task(batch_in_flight())
        await asyncio.sleep(0)  # the batch holds the lock
        listener = launch_reader._Rebalance(reader)
        consumer.coordination = asyncio.create_task(listener.on_partitions_revoked(set()))
        await asyncio.wait_for(reader.on_stop(), 5.0)
        return events

    monkeypatch.setattr(launch_reader, "STOP_WAIT_S", 0.05)
    assert asyncio.run(scenario()) == ["batch cancelled", "consumer stopped"]
