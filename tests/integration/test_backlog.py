"""A learner partition's backlog against a real broker (streams/worker/backlog.py): the records
of `learner-commands` the app's consumer group has not committed, which the takeover's heal
leaves to the replay."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import KafkaConnectionError

from schemas import topics
from streams.config.settings import Settings
from streams.domain.learners import TrackedAttempt
from streams.kafka.admin import ensure_topics
from streams.stages import commands
from streams.worker import backlog as backlog_module
from streams.worker.backlog import learner_backlog
from streams.worker.state import KafkaLog


def launch_command(attempt_id: str) -> bytes:
    row = TrackedAttempt("acme", "ada", "e1", attempt_id, "2026-01-09T00:00:00+00:00", 0, 0)
    return commands.encode(commands.Attempts("launches", [list(row)]))


def test_the_backlog_is_what_the_group_has_not_committed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backlog_module, "BACKLOG_CHUNK", 2)  # 5 records: chunks of 2, 2, 1
    ensure_topics(settings)
    tp = TopicPartition(settings.topic(topics.LEARNER_COMMANDS), 1)
    values = [launch_command(f"a{n}") for n in range(5)]

    async def scenario() -> None:
        producer = AIOKafkaProducer(**settings.aiokafka())
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(tp.topic, value, partition=tp.partition)
        finally:
            await producer.stop()
        admin = AIOKafkaAdminClient(**settings.aiokafka())
        await admin.start()
        kafka_log = KafkaLog(settings, producer=lambda: None)

        async def the_admin() -> AIOKafkaAdminClient:
            return admin

        async def no_coordinator() -> AIOKafkaAdminClient:
            raise KafkaConnectionError()

        async def read(admin: Any, partition: int) -> list[list[bytes | None]]:
            return [chunk async for chunk in learner_backlog(settings, kafka_log, admin, partition)]

        try:
            chunks = await read(the_admin, tp.partition)
            assert chunks == [values[:2], values[2:4], values[4:]], "the whole partition, chunked"

            group = AIOKafkaConsumer(
                **settings.aiokafka(), group_id=settings.app_id, enable_auto_commit=False
            )
            await group.start()
            try:
                group.assign([tp])
                await group.commit({tp: 3})
            finally:
                await group.stop()
            chunks = await read(the_admin, tp.partition)
            assert chunks == [values[3:]], "from the committed offset on"

            chunks = await read(no_coordinator, tp.partition)
            assert chunks == [values[:2], values[2:4], values[4:]], "no coordinator: from the start"
            assert await read(the_admin, 0) == [], "an empty one"

            # the purge deleted what was committed: without the coordinator's word the read
            # starts at the first record left, not chunk by chunk through the deleted range
            await admin.delete_records({tp: RecordsToDelete(before_offset=3)})
            reads: list[tuple[int, int]] = []
            real_read = kafka_log.read

            async def counted_read(topic: str, partition: int, start: int, end: int) -> Any:
                reads.append((start, end))
                return await real_read(topic, partition, start, end)

            monkeypatch.setattr(kafka_log, "read", counted_read)
            chunks = await read(no_coordinator, tp.partition)
            assert chunks == [values[3:]], "the records left"
            assert reads == [(3, 5)], "one read, from the first offset left"
        finally:
            await kafka_log.stop()
            await admin.close()

    asyncio.run(scenario())
