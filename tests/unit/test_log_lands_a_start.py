"""What a flush lands of a partition is always a start of its records: the stages' changelogs
assume it of a flush that never completed (a process that dies between a failed send and the
next keeps what landed; the tenant stage ranks its records within a flush for it).

aiokafka's producer, handed a partition's batches at once, goes on with the later ones after
one fails (refused for its size, timed out), so a group of several batches could land its end
without its middle. The worker's `KafkaLog` hands a partition its next batch only once Kafka
acknowledged the one before. Through aiokafka's own batch builder (1 MiB batches)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, RequestTimedOutError
from aiokafka.producer.message_accumulator import BatchBuilder

from streams.worker import state
from streams.worker.state import KafkaLog
from tests.unit.test_partials_batches import _records

ROWS = [(f"key-{n:05d}".encode(), b"%05d" % n + b"v" * 300) for n in range(10_000)]  # 4 batches
VALUES = [value for _, value in ROWS]


class Producer:
    """Batches as aiokafka builds them; the broker takes each at once, except the sends
    numbered in `failures`, which fail through their future or (`raised`) from `send_batch`
    itself, as aiokafka does for a partition that did not drain in time."""

    def __init__(
        self, failures: dict[int, BaseException], raised: frozenset[int] = frozenset()
    ) -> None:
        self.failures = failures
        self.raised = raised
        self.sends: list[tuple[int, list[bytes], bool]] = []  # (partition, values, failed)
        self.landed: dict[int, list[bytes]] = {}  # partition -> values, in log order

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(1024 * 1024, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        error = self.failures.get(len(self.sends))
        values = [record.value for record in _records(batch)]
        self.sends.append((partition, values, error is not None))
        if error is not None and len(self.sends) - 1 in self.raised:
            raise error
        future = asyncio.get_running_loop().create_future()
        if error is not None:
            future.set_exception(error)
            return future
        log = self.landed.setdefault(partition, [])
        future.set_result(SimpleNamespace(offset=len(log)))
        log += values
        return future


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "RETRY_FIRST_S", 0.001)


def _send(producer: Producer, partitions: int) -> dict[Any, Any]:
    log = KafkaLog(SimpleNamespace(topic=lambda name: name), lambda: producer)  # type: ignore[arg-type]
    return asyncio.run(log.send({("attempts", p): ROWS for p in range(partitions)}))


def _is_start(values: list[bytes]) -> bool:
    return values == VALUES[: len(values)]


def _check_starts_again_after_failures(producer: Producer) -> None:
    """After a failed batch, a partition's next batch starts its group again: no later batch
    of the failed pass was sent."""
    for n, (partition, _, failed) in enumerate(producer.sends):
        if not failed:
            continue
        later = [values for p, values, _ in producer.sends[n + 1 :] if p == partition]
        assert later, "the group was not sent again"
        assert later[0][0] == VALUES[0], f"send {n + 1} on: a batch after the failed one went"


@pytest.mark.parametrize(
    "error",
    [RequestTimedOutError(), MessageSizeTooLargeError()],
    ids=["timed-out", "refused-for-size"],
)
def test_no_batch_goes_after_a_failed_one_until_the_group_goes_again(
    error: BaseException,
) -> None:
    producer = Producer({1: error})  # the group's second batch fails
    acked = _send(producer, 1)
    assert acked[("attempts", 0)][1] - acked[("attempts", 0)][0] == len(ROWS) - 1
    _check_starts_again_after_failures(producer)
    first_batch = producer.sends[0][1]
    # what landed: the first batch of the failed pass, then the whole group
    assert producer.landed[0] == first_batch + VALUES


def test_a_partition_that_did_not_drain_sends_nothing_after_it() -> None:
    producer = Producer({2: KafkaTimeoutError()}, raised=frozenset({2}))
    acked = _send(producer, 1)
    assert ("attempts", 0) in acked
    _check_starts_again_after_failures(producer)
    landed_first = producer.sends[0][1] + producer.sends[1][1]
    assert producer.landed[0] == landed_first + VALUES


def test_at_every_failure_point_each_partition_landed_a_start_then_its_whole_group() -> None:
    """Every batch of a three-partition flush failed in turn: each partition's log holds a
    start of its group (what a process that died at the failure would keep), then the group."""
    baseline = Producer({})
    _send(baseline, 3)
    sends = len(baseline.sends)
    assert sends == 12  # four batches a partition
    for failing in range(sends):
        producer = Producer({failing: RequestTimedOutError()})
        acked = _send(producer, 3)
        assert len(acked) == 3
        _check_starts_again_after_failures(producer)
        for partition in range(3):
            landed = producer.landed[partition]
            assert landed[-len(VALUES) :] == VALUES
            assert _is_start(landed[: -len(VALUES)]), (failing, partition)


def test_groups_of_one_batch_are_sent_once_each_and_acknowledged_whole() -> None:
    producer = Producer({})
    log = KafkaLog(SimpleNamespace(topic=lambda name: name), lambda: producer)  # type: ignore[arg-type]
    acked = asyncio.run(log.send({("attempts", p): ROWS[:1_000] for p in range(12)}))
    assert len(producer.sends) == 12
    assert all(acked[("attempts", p)] == (0, 999) for p in range(12))


def test_batches_are_handed_over_closed_so_they_go_with_the_next_request() -> None:
    """aiokafka lets an open batch linger (`producer_linger_ms`) for records a `send` might add
    to it; nothing adds to the log's batches, so it closes them and no flush waits the linger
    out (docs/benchmarks.md: 5.5 ms a send open, 0.4 ms closed, on this machine's broker)."""
    closed: list[bool] = []

    class Watching(Producer):
        async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
            closed.append(batch.closed())
            return await super().send_batch(batch, topic, partition=partition)

    _send(Watching({}), 3)
    assert closed and all(closed)


def test_a_record_between_two_batches_is_before_the_acknowledged_first() -> None:
    """(helper-114) A record of another writer (a deposed owner) that lands between two batches
    of one group lay inside the (first, last) `KafkaLog.send` acknowledged, and
    `DurableBatch._follow_lineage` reads only [expected, first): `first` is now the first batch
    after the last gap, so the lineage reads it."""

    class Interleaved(Producer):
        async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
            if len(self.sends) == 1:  # before the group's second batch
                self.landed.setdefault(partition, []).append(b"zombie")
            return await super().send_batch(batch, topic, partition=partition)

    producer = Interleaved({})
    first, last = _send(producer, 1)[("attempts", 0)]
    landed = producer.landed[0]
    assert last == len(landed) - 1
    # what `_follow_lineage` reads of the partition: [expected, first); the zombie must be in it
    assert landed.index(b"zombie") < first, first
