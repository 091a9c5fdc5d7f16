"""A learner partition's backlog against a real broker (streams/worker/backlog.py): the records
of `learner-commands` the app's consumer group has not committed, which the takeover's heal
leaves to the replay."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

from schemas import topics
from streams.config.settings import Settings
from streams.domain.learners import TrackedAttempt
from streams.kafka.admin import ensure_topics
from streams.stages import commands
from streams.worker.backlog import learner_backlog
from streams.worker.state import KafkaLog


def launch_command(attempt_id: str) -> bytes:
    row = TrackedAttempt("acme", "ada", "e1", attempt_id, "2026-01-09T00:00:00+00:00", 0, 0)
    return commands.encode(commands.Attempts("launches", [list(row)]))


def test_the_backlog_is_what_the_group_has_not_committed(settings: Settings) -> None:
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

        try:
            backlog = await learner_backlog(settings, kafka_log, the_admin, tp.partition)
            assert backlog == values, "nothing committed: the whole partition"

            group = AIOKafkaConsumer(
                **settings.aiokafka(), group_id=settings.app_id, enable_auto_commit=False
            )
            await group.start()
            try:
                group.assign([tp])
                await group.commit({tp: 3})
            finally:
                await group.stop()
            backlog = await learner_backlog(settings, kafka_log, the_admin, tp.partition)
            assert backlog == values[3:], "from the committed offset on"

            backlog = await learner_backlog(settings, kafka_log, no_coordinator, tp.partition)
            assert backlog == values, "the coordinator unknown: from the first record"
            assert await learner_backlog(settings, kafka_log, the_admin, 0) == [], "an empty one"
        finally:
            await kafka_log.stop()
            await admin.close()

    asyncio.run(scenario())
