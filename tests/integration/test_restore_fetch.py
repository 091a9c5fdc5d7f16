"""The restore's consumer reads a real broker's fetches as aiokafka parsed them.

`read_as_fetched` (streams/worker/recovery.py) reaches into the installed aiokafka's fetcher.
Against the real broker: it takes on a started consumer, and `getmany` then hands out parsed
records whose offsets, keys, values and headers are those a plain consumer reads of the same
changelog partition (compressed batches included, as a producer may write them). The restores
of every worker test (restarts, wiped state folders) go through it too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from kafka import KafkaProducer

from schemas import topics
from streams.config.settings import Settings
from streams.kafka.admin import ensure_topics
from streams.stages.store import epoch_header
from streams.worker.recovery import read_as_fetched

pytestmark = pytest.mark.integration


def produce(settings: Settings, topic: str) -> int:
    """Records with and without the epoch header, and tombstones: an lz4 batch, then a plain one."""
    sent = 0
    for codec in ("lz4", None):
        producer = KafkaProducer(**settings.kafka_python(), acks="all", compression_type=codec)
        try:
            for n in range(50):
                headers = list(epoch_header((1, n % 3))) if n % 7 else []
                value = None if n % 11 == 0 else f'{{"n":{n},"codec":"{codec}"}}'.encode()
                producer.send(
                    topic, key=f"acme/l{n}/a{n}".encode(), value=value, headers=headers, partition=0
                )
                sent += 1
        finally:
            producer.flush()
            producer.close()
    return sent


async def read_all(settings: Settings, topic: str, as_fetched: bool) -> tuple[bool, list[Any]]:
    consumer = AIOKafkaConsumer(
        **settings.aiokafka(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        changed = read_as_fetched(consumer) if as_fetched else False
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        records: list[Any] = []
        end = (await consumer.end_offsets([tp]))[tp]
        deadline = time.monotonic() + 60
        while await consumer.position(tp) < end:
            assert time.monotonic() < deadline, f"read {len(records)} of {end} records in 60 s"
            fetched = await consumer.getmany(tp, timeout_ms=1000)
            records.extend(fetched.get(tp, []))
        return changed, records
    finally:
        await consumer.stop()


def test_a_started_consumer_reads_a_changelog_as_parsed_records(settings: Settings) -> None:
    ensure_topics(settings)
    topic = settings.topic(topics.ERASURES_CHANGELOG)  # internal: no published schema
    sent = produce(settings, topic)

    changed, parsed = asyncio.run(read_all(settings, topic, as_fetched=True))
    _, plain = asyncio.run(read_all(settings, topic, as_fetched=False))

    assert changed is True
    assert len(parsed) == len(plain) == sent
    assert not any(isinstance(record, ConsumerRecord) for record in parsed)
    assert all(isinstance(record, ConsumerRecord) for record in plain)

    def view(record: Any) -> tuple[Any, ...]:
        return record.offset, record.key, record.value, tuple(record.headers)

    assert [view(r) for r in parsed] == [view(r) for r in plain]
    assert any(r.value is None for r in parsed) and any(not r.headers for r in parsed)
