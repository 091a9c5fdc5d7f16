"""Partial counts refused by a broker whose `max.message.bytes` is below what the producer
packs (streams/stages/learners.py `send_partials`), through the worker's real `KafkaLog` and
aiokafka's own batch builder.

Kafka bounds a producer batch, not a record: `KafkaLog` packs a flush's records for a partition
into batches of up to 1 MiB (`producer_max_batch_size`), so commands of one report each, sent
again in one flush, made the same batches and were refused again (helper-111). They go in
flushes cut in two until the broker takes each."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.producer.message_accumulator import BatchBuilder

from streams.domain.learners import TenantCounts
from streams.stages import commands
from streams.stages.learners import LearnerStage, send_partials
from streams.worker.state import KafkaLog

BROKER_MAX_MESSAGE_BYTES = 200_000  # below the commands' 256 KB


class Producer:
    """aiokafka's batch builder (1 MiB, as streams/worker/app.py); the broker refuses a batch
    above its limit (MESSAGE_TOO_LARGE; aiokafka does not split it)."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int, bool]] = []  # (records, bytes, refused)
        self.landed: list[bytes] = []

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(1024 * 1024, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        size = batch.size()
        refused = size > BROKER_MAX_MESSAGE_BYTES
        self.batches.append((batch.record_count(), size, refused))
        future = asyncio.get_running_loop().create_future()
        if refused:
            future.set_exception(MessageSizeTooLargeError())
        else:
            future.set_result(SimpleNamespace(offset=0))
            self.landed += [record.value for record in _records(batch)]
        return future


def _records(batch: BatchBuilder) -> list[Any]:
    from aiokafka.record.default_records import DefaultRecordBatch

    built = batch._builder.build()  # (the bytes the broker would get)
    return list(DefaultRecordBatch(built))


class Batch:
    """A timer's batch over the real `KafkaLog`."""

    def __init__(self, log: KafkaLog) -> None:
        self.log = log
        self.groups: dict[tuple[str, int | None], list[tuple[bytes | None, bytes | None]]] = {}

    def emit(
        self, topic: str, key: bytes | None, value: bytes | None, partition: Any = None
    ) -> None:
        self.groups.setdefault((topic, partition), []).append((key, value))

    async def flush(self) -> None:
        await self.log.send(self.groups)


def test_reports_refused_as_a_batch_go_in_flushes_the_broker_takes() -> None:
    stage = LearnerStage(1)  # one tenant partition: every tenant's reports go there
    windows = {f"2026-{m:02d}-01": 3 for m in range(1, 13)}
    tenants = {f"tenant-{t:05d}": TenantCounts(dict(windows), 3, "cut", 7, 1) for t in range(400)}
    for partition in range(4):
        stage.counters.reset_partition(partition, (1, 1), dict(tenants))
    producer = Producer()
    log = KafkaLog(SimpleNamespace(topic=lambda name: name), lambda: producer)  # type: ignore[arg-type]
    sent = asyncio.run(send_partials(stage, lambda: Batch(log)))  # type: ignore[arg-type, return-value]
    assert sent == 1_600  # one report a command
    assert any(refused for _, _, refused in producer.batches)
    reports = set()
    for value in producer.landed:
        command = commands.decode(value)
        assert isinstance(command, commands.Partials)
        reports |= {(t, p) for t, parts in command.tenants.items() for p in parts}
    assert reports == {(t, str(p)) for t in tenants for p in range(4)}
    assert not stage.partial_commands(), "nothing left due"
