"""(helper-114) A record of another writer (a deposed owner) that lands between two batches of
one group lies inside the (first, last) that `KafkaLog.send` acknowledged, and
`DurableBatch._follow_lineage` reads only [expected, first): `first` is now the first batch after
the last gap, so the lineage reads it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder

from streams.worker.state import KafkaLog
from tests.unit.test_partials_batches import _records

ROWS = [(f"key-{n:05d}".encode(), b"%05d" % n + b"v" * 300) for n in range(10_000)]  # 4 batches


class Producer:
    """Lands each batch at once; before the partition's second batch, a deposed owner's record
    lands (another process's producer)."""

    def __init__(self) -> None:
        self.log: list[bytes] = []
        self.sends = 0

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(1024 * 1024, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        self.sends += 1
        if self.sends == 2:
            self.log.append(b"zombie")
        future = asyncio.get_running_loop().create_future()
        future.set_result(SimpleNamespace(offset=len(self.log)))
        self.log += [record.value for record in _records(batch)]
        return future


def test_a_record_between_two_batches_is_before_the_acknowledged_first() -> None:
    producer = Producer()
    log = KafkaLog(SimpleNamespace(topic=lambda name: name), lambda: producer)  # type: ignore[arg-type]
    acked = asyncio.run(log.send({("attempts", 0): ROWS}))
    first, last = acked[("attempts", 0)]
    zombie = producer.log.index(b"zombie")
    assert last == len(producer.log) - 1
    # what `_follow_lineage` reads of the partition: [expected, first); the zombie must be in it
    assert zombie < first, (first, zombie)
