"""Attacks on the bulk launch reader (streams/worker/agents/launch_reader.py), a review of
2026-12-03 (helper-61); the three findings are fixed.

The real LaunchReader, the real IngestStage, the real DurableBatch and the real KafkaLog are
used; faked are only aiokafka's consumer (`_Consumer`: a log per partition, a position that
getmany advances and seek moves, commits recorded) and the app's aiokafka producer
(`_Producer`: create_batch/send_batch as KafkaLog uses them).

Run from the repository root:
    .venv/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_launch_reader_review.py
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import cramjam
import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord

from schemas import topics
from streams.stages import metrics
from streams.stages.batch import DurableBatch
from streams.stages.ownership import Ownership
from streams.worker import runtime, state
from streams.worker.agents import launch_reader
from streams.worker.app import settings

LAUNCHES = settings.topic(topics.LAUNCHES)
NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _launch(learner: str, attempt: str = "a1") -> bytes:
    return orjson.dumps(
        {
            "event_id": f"e-{learner}-{attempt}",
            "tenant_id": "acme",
            "learner_id": learner,
            "element_id": "el",
            "attempt_id": attempt,
            "launched_at": "2025-12-31T23:00:00Z",
        }
    )


def _record(partition: int, offset: int, value: bytes | None) -> ConsumerRecord:
    return ConsumerRecord(
        topic=LAUNCHES,
        partition=partition,
        offset=offset,
        timestamp=NOW_MS,
        timestamp_type=0,
        key=b"acme/x",
        value=value,
        checksum=None,
        serialized_key_size=6,
        serialized_value_size=len(value or b""),
        headers=(),
    )


class _Consumer:
    """aiokafka's consumer as the launch reader uses it: getmany from a position per partition
    (seek moves it), commit, assignment. `errors`: getmany call number -> exception raised."""

    def __init__(self, logs: dict[int, list[bytes | None]], errors: dict[int, BaseException]):
        self.logs = {
            TopicPartition(LAUNCHES, p): [_record(p, o, v) for o, v in enumerate(values)]
            for p, values in logs.items()
        }
        self.position = {tp: 0 for tp in self.logs}
        self.errors = errors
        self.calls = 0
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.logs)

    async def getmany(self, timeout_ms: int = 0, max_records: int = 0) -> dict:
        self.calls += 1
        await asyncio.sleep(0)
        if self.calls in self.errors:
            raise self.errors[self.calls]
        out = {}
        for tp, log in self.logs.items():
            records = log[self.position[tp] : self.position[tp] + max_records]
            if records:
                out[tp] = records
                self.position[tp] += len(records)
                max_records -= len(records)
        if not out:
            await asyncio.sleep(timeout_ms / 1000)
        return out

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.position[tp] = offset

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


class _Builder:
    def __init__(self) -> None:
        self.values: list[bytes | None] = []

    def append(self, *, key: Any, value: Any, timestamp: Any, headers: Any) -> object:
        self.values.append(value)
        return object()

    def size(self) -> int:  # (aiokafka's: what a worker's log cuts its batches by once refused)
        return sum(len(value or b"") for value in self.values)

    def close(self) -> None:  # (the log closes a batch before it hands it over)
        pass


class _Producer:
    """Acknowledges every send, except that a learner command holding `refuse` is refused
    for its size (as a topic whose max.message.bytes is below the command's size refuses it)."""

    def __init__(self, refuse: bytes | None = None) -> None:
        self.refuse = refuse
        self.sent: list[tuple[str, int, list[bytes | None]]] = []
        self.next_offset = 0

    def create_batch(self) -> _Builder:
        return _Builder()

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    async def send_batch(self, batch: _Builder, topic: str, *, partition: int) -> Any:
        fut = asyncio.get_running_loop().create_future()
        if self.refuse is not None and any(self.refuse in (v or b"") for v in batch.values):
            fut.set_exception(MessageSizeTooLargeError())
            return fut
        self.sent.append((topic, partition, batch.values))
        fut.set_result(SimpleNamespace(offset=self.next_offset))
        self.next_offset += len(batch.values)
        return fut


def _reader(monkeypatch: pytest.MonkeyPatch, consumer: _Consumer, producer: _Producer) -> Any:
    log = state.KafkaLog(settings, lambda: producer)
    monkeypatch.setattr(
        launch_reader, "new_batch", lambda: DurableBatch(runtime.local_state, log, Ownership())
    )
    monkeypatch.setattr(launch_reader, "RETRY_S", 0.0)
    monkeypatch.setattr(launch_reader, "LINGER_S", 0.0)
    monkeypatch.setattr(state, "RETRY_FIRST_S", 0.0)
    monkeypatch.setattr(state, "RETRY_MAX_S", 0.0)
    reader = launch_reader.LaunchReader()
    reader.consumer = consumer  # type: ignore[assignment]
    return reader


def _committed(consumer: _Consumer) -> dict[TopicPartition, int]:
    done: dict[TopicPartition, int] = {}
    for commit in consumer.commits:
        done.update(commit)
    return done


def _run_until_committed(reader: Any, consumer: _Consumer, supervised: bool = False) -> None:
    """Run the reader's `_read` (under mode's task supervision when `supervised`: a crash is
    recorded, not raised) until a commit or its end, at most 2 s, then stop it."""

    async def scenario() -> None:
        read = reader._read(reader)
        task = asyncio.ensure_future(reader._execute_task(read) if supervised else read)
        for _ in range(200):
            if _committed(consumer) or task.done():
                break
            await asyncio.sleep(0.01)
        reader._stopped.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())


# -- 1. an error aiokafka raises from getmany ends the reader, and mode crashes the worker ----


def test_a_kafka_error_from_getmany_does_not_end_the_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiokafka hands errors of its group coordination routine to the next getmany
    (`GroupCoordinator._push_error_to_user` -> `check_errors`): a heartbeat answered with an
    error code it does not know (COORDINATOR_LOAD_IN_PROGRESS while a broker restarts, for
    one) is `KafkaError("Unexpected exception in heartbeat task ...")`. `_fill` calls getmany
    outside any try: the exception leaves the `_read` task, and mode's `_execute_task` crashes
    the service and, without a supervisor, every node of its beacon (the app: the worker
    stops). The launches behind it are never read by this worker."""
    consumer = _Consumer(
        {0: [_launch("l1"), _launch("l2"), _launch("l3")]},
        errors={1: KafkaError("Unexpected exception in heartbeat task: GroupLoadInProgressError")},
    )
    producer = _Producer()
    reader = _reader(monkeypatch, consumer, producer)

    _run_until_committed(reader, consumer, supervised=True)
    assert not reader._crashed.is_set(), f"the reader crashed: {reader.crash_reason!r}"
    assert _committed(consumer) == {TopicPartition(LAUNCHES, 0): 3}


def test_an_error_of_another_kind_from_getmany_does_not_end_the_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not every error out of a fetch is a KafkaError: aiokafka decompresses a batch with
    cramjam, whose error on a batch it cannot read is `cramjam.DecompressionError`. Until
    2026-12-06 `_fill` caught KafkaError only, so such an error crashed the worker (the tenant
    stage, deletions and the HTTP side with the launches). It is logged, counted and the fetch
    tried again now."""
    consumer = _Consumer(
        {0: [_launch("l1"), _launch("l2")]},
        errors={1: cramjam.DecompressionError("lz4: ERROR_frameType_unknown")},
    )
    producer = _Producer()
    reader = _reader(monkeypatch, consumer, producer)
    errors_before = _stage_errors()

    _run_until_committed(reader, consumer, supervised=True)
    assert not reader._crashed.is_set(), f"the reader crashed: {reader.crash_reason!r}"
    assert _committed(consumer) == {TopicPartition(LAUNCHES, 0): 2}
    assert _stage_errors() == errors_before + 1


def _stage_errors() -> float:
    return metrics.stage_errors_total.labels("launch-reader")._value.get()


# -- 2. a learner command Kafka refuses for its size stalls every partition of the batch ------


def test_a_command_kafka_refuses_for_its_size_does_not_hold_the_batch_for_good(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The agents' loop (streams/stages/loop.py) takes a group apart when Kafka refuses a
    record for its size, "so that ... a record Kafka refuses never blocks a stage", and dead-
    letters only what wrote it. The launch reader has no such path: `route` lets RecordTooLarge
    out (it catches Fenced only), `_read` rewinds and reads the same fetch again, for good.
    Every launch of the fetch, on every partition of it, waits behind the one command (here
    the command of learner partition 'huge' goes to; a topic with max.message.bytes below the
    ~256 kB-1 MB commands the reader builds refuses it)."""
    consumer = _Consumer(
        {0: [_launch("l1"), _launch("huge"), _launch("l2")], 1: [_launch("l3")]}, errors={}
    )
    producer = _Producer(refuse=b'"huge"')
    reader = _reader(monkeypatch, consumer, producer)

    _run_until_committed(reader, consumer)
    rounds = sum(1 for tp, offset in consumer.seeks if offset == 0)
    assert _committed(consumer) == {
        TopicPartition(LAUNCHES, 0): 3,
        TopicPartition(LAUNCHES, 1): 1,
    }, (
        f"not committed: the same fetch was rewound and routed again {rounds} times; "
        "no launch of it (partitions 0 and 1) is counted or dead-lettered"
    )
    commands = settings.topic(topics.LEARNER_COMMANDS)
    routed = {
        row[1]
        for topic, _, values in producer.sent
        if topic == commands
        for value in values
        for row in orjson.loads(value or b"{}").get("attempts", [])
    }
    assert routed == {"l1", "l2", "l3"}  # the others counted, each exactly where it belongs
    letters = [
        orjson.loads(value or b"{}")
        for topic, _, values in producer.sent
        if topic == settings.topic(topics.DEAD_LETTERS)
        for value in values
    ]
    assert len(letters) == 1 and "huge" in letters[0]["raw"]  # the refused one dead-lettered


# -- 3. a stop that lands while the reader lingers over a fetch crashes the worker ------------


class _StoppableConsumer(_Consumer):
    """aiokafka: `stop()` sets `_closed` at once; a getmany after it raises
    ConsumerStoppedError (consumer.py: `if self._closed: raise ConsumerStoppedError()`);
    a getmany waiting returns as soon as records arrive."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed = False

    async def getmany(self, timeout_ms: int = 0, max_records: int = 0) -> dict:
        from aiokafka.errors import ConsumerStoppedError

        if self.closed:
            raise ConsumerStoppedError()
        if self.calls >= 1:  # more launches arrive a moment later (the reader is under load)
            self.calls += 1
            await asyncio.sleep(0.05)
            tp = TopicPartition(LAUNCHES, 0)
            record = _record(0, len(self.logs[tp]), _launch(f"late{self.calls}"))
            self.logs[tp].append(record)
        return await super().getmany(timeout_ms=timeout_ms, max_records=max_records)

    async def stop(self) -> None:
        self.closed = True
        await asyncio.sleep(0.2)  # GroupCoordinator.close(): leaving the group takes a moment


def test_a_stop_while_the_reader_lingers_over_a_fetch_is_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`on_stop` takes the lock only to wait for a batch being routed; while `_read` is in
    `_fill` (lingering up to INGEST_LINGER_MS to fill a batch, the usual state under load) the
    lock is free, so `on_stop` goes on to `consumer.stop()`, which marks the consumer closed
    at once. The next getmany of the linger loop (records arrived, the deadline not reached)
    raises ConsumerStoppedError out of `_read`: mode crashes the service, and the worker,
    asked to stop, exits with "We experienced a crash! Reraising original exception"
    (mode/worker.py:311). Nothing is lost (the batch was not committed), but every stop under
    load ends as a crash."""
    consumer = _StoppableConsumer({0: [_launch("l1")]}, errors={})
    producer = _Producer()
    reader = _reader(monkeypatch, consumer, producer)
    monkeypatch.setattr(launch_reader, "LINGER_S", 1.0)

    async def scenario() -> None:
        task = asyncio.ensure_future(reader._execute_task(reader._read(reader)))
        while not reader.pending:
            await asyncio.sleep(0.005)
        reader._stopped.set()  # mode's Service.stop(): _stopped_set(), then on_stop()
        await reader.on_stop()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert not reader._crashed.is_set(), f"the reader crashed: {reader.crash_reason!r}"
