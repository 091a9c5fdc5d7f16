"""Reading one input record back by its position, for a dead letter that needs its raw text.

Ingest keeps a launch's raw text inside the learner command only when it is small; a large one
travels by reference (topic, partition, offset), so that the commands the service builds stay far
below Kafka's message size limit. The learner stage rarely needs the text (a conflict or an
erased replay of a large launch) and then reads it here.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.config.settings import Settings

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 30.0


async def fetch_raw(settings: Settings, topic: str, partition: int, offset: int) -> bytes | None:
    """The value of record `offset` of `topic`/`partition`, or None when it cannot be read."""
    consumer = AIOKafkaConsumer(
        **settings.aiokafka(),
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=2 * 1024 * 1024,
        # a record deleted by retention: the fetch starts at the first one left, which is not
        # `offset`, and the answer is None at once (aiokafka's default, "latest", would wait
        # FETCH_TIMEOUT_S for a record that arrives after the end)
        auto_offset_reset="earliest",
    )
    try:
        await consumer.start()  # (inside: a start that fails leaves a client to stop as well)
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        fetched = await consumer.getmany(tp, timeout_ms=int(FETCH_TIMEOUT_S * 1000), max_records=1)
        for record in fetched.get(tp, []):
            if record.offset == offset:
                return record.value
    except Exception:
        log.warning("could not read %s/%d@%d back for a dead letter", topic, partition, offset)
    finally:
        await consumer.stop()
    return None
