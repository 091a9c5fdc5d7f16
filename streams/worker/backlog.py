"""A learner partition's backlog: its `learner-commands` records that the app's consumer group has
not committed, which the partition's new owner replays after its takeover.

The takeover's heal (`LearnerStage.heal_marked`) leaves the launches found here to that replay,
so that they are applied after the commands ahead of them (streams/stages/learners.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from schemas import topics
from streams.config.settings import Settings
from streams.worker.state import KafkaLog

log = logging.getLogger(__name__)

BACKLOG_CHUNK = 2_000  # records: a command holds up to a few hundred launches


async def learner_backlog(
    settings: Settings,
    kafka_log: KafkaLog,
    admin: Callable[[], Awaitable[AIOKafkaAdminClient]],
    partition: int,
) -> AsyncIterator[list[bytes | None]]:
    """The values of a learner partition's records from the group's committed offset to the
    end, BACKLOG_CHUNK records at a time (a lagging partition's backlog can hold millions of
    launches: only a chunk is held at once).

    Without a committed offset (or when the coordinator cannot say), from the partition's first
    record left (the purge keeps little more than the backlog): a launch found there is only
    left to the replay, which is never wrong; at worst a cleaned attempt stays unhealed."""
    tp = TopicPartition(settings.topic(topics.LEARNER_COMMANDS), partition)
    start = 0
    try:
        client = await admin()
        committed = await client.list_consumer_group_offsets(settings.app_id, partitions=[tp])
        meta = committed.get(tp)
        if meta is not None and meta.offset > 0:
            start = meta.offset
    except KafkaError as exc:
        log.warning("learner takeover: the committed offset of %s is unknown (%s)", tp, exc)
    # the purge deletes what the group committed: read from the first record left, not chunk
    # by chunk through the deleted range (it can be far longer than the backlog)
    start = max(start, await kafka_log.start_offset(topics.LEARNER_COMMANDS, partition))
    end = await kafka_log.end_offset(topics.LEARNER_COMMANDS, partition)
    while start < end:
        until = min(end, start + BACKLOG_CHUNK)
        records = await kafka_log.read(topics.LEARNER_COMMANDS, partition, start, until)
        yield [record.value for record in records]
        start = until
