"""What the review checked on the launch reader and found to hold (these PASS on the current
code; kept as evidence). Same fakes as test_launch_reader_review.py: the real LaunchReader,
IngestStage, DurableBatch and KafkaLog over a fake aiokafka consumer and producer."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import NotLeaderForPartitionError

from streams.worker.agents import launch_reader
from tests.unit.test_launch_reader_review import (
    LAUNCHES,
    _Builder,
    _committed,
    _Consumer,
    _launch,
    _Producer,
    _reader,
)


async def _run_until_committed(reader: Any, consumer: _Consumer, rounds: int = 300) -> None:
    task = asyncio.ensure_future(reader._read(reader))
    for _ in range(rounds):
        if _committed(consumer) or task.done():
            break
        await asyncio.sleep(0.01)
    reader._stopped.set()
    await asyncio.wait_for(task, 5)


def _sent(producer: _Producer, suffix: str) -> list[Any]:
    return [orjson.loads(v) for t, _, vals in producer.sent if t.endswith(suffix) for v in vals]


def test_odd_records_are_dead_lettered_or_routed_and_the_batch_committed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = [None, b"", b"\xff\xfe", b"[]", _launch("l1")]
    consumer = _Consumer({0: values}, errors={})
    producer = _Producer()
    reader = _reader(monkeypatch, consumer, producer)
    asyncio.run(_run_until_committed(reader, consumer))
    assert _committed(consumer) == {TopicPartition(LAUNCHES, 0): 5}
    letters = _sent(producer, "dead-letters")
    assert [d["source"]["offset"] for d in letters] == [0, 1, 2, 3]
    assert letters[2]["raw_encoding"] == "base64"
    assert sum(len(c["attempts"]) for c in _sent(producer, "learner-commands")) == 1


class _FlakyProducer(_Producer):
    """NotLeader for the first send of one partition after others were acknowledged."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def send_batch(self, batch: _Builder, topic: str, *, partition: int) -> Any:
        if topic.endswith("learner-commands") and self.sent and not self.failed:
            self.failed = True
            fut = asyncio.get_running_loop().create_future()
            fut.set_exception(NotLeaderForPartitionError())
            return fut
        return await super().send_batch(batch, topic, partition=partition)


def test_a_send_failing_after_part_of_the_batch_was_sent_is_retried_before_the_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    learners = [f"l{n}" for n in range(40)]  # spread over several learner partitions
    consumer = _Consumer({0: [_launch(x) for x in learners]}, errors={})
    producer = _FlakyProducer()
    reader = _reader(monkeypatch, consumer, producer)
    asyncio.run(_run_until_committed(reader, consumer))
    assert producer.failed
    assert _committed(consumer) == {TopicPartition(LAUNCHES, 0): 40}
    rows = [row for c in _sent(producer, "learner-commands") for row in c["attempts"]]
    assert sorted({row[1] for row in rows}) == sorted(learners)


def test_a_revocation_waits_for_the_batch_in_flight_and_drops_what_is_pending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = _Consumer({0: [_launch("l1")], 1: [_launch("l2")]}, errors={})
    gate = asyncio.Event
    events: list[str] = []

    class _SlowProducer(_Producer):
        async def send_batch(self, batch: _Builder, topic: str, *, partition: int) -> Any:
            await self.release.wait()
            events.append("sent")
            return await super().send_batch(batch, topic, partition=partition)

    async def scenario() -> None:
        producer = _SlowProducer()
        producer.release = gate()  # type: ignore[attr-defined]
        reader = _reader(monkeypatch, consumer, producer)
        task = asyncio.ensure_future(reader._read(reader))
        while not reader.lock.locked():
            await asyncio.sleep(0.005)
        reader.pending = [SimpleNamespace(topic=LAUNCHES, partition=1, offset=9)]
        listener = launch_reader._Rebalance(reader)
        revoke = asyncio.ensure_future(
            listener.on_partitions_revoked({TopicPartition(LAUNCHES, 1)})
        )
        await asyncio.sleep(0.05)
        assert not revoke.done(), "the revocation must wait for the batch in flight"
        producer.release.set()  # type: ignore[attr-defined]
        await asyncio.wait_for(revoke, 5)
        events.append("revoked")
        assert reader.pending == []
        reader._stopped.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert consumer.commits and events.index("revoked") > events.index("sent")
