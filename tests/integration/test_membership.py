"""The takeover's question to the group coordinator, against a real broker: a member of the
group's current generation hears yes; a deposed one (a stale generation, or a member id the
group does not know) hears no (streams/worker/membership.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer

from streams.config.settings import Settings
from streams.kafka.admin import ensure_topics
from streams.worker.membership import is_current

DEADLINE_S = 60.0


class StaleView:
    """A consumer's coordinator as a deposed process still sees it: an old generation or
    member id, the same connection to the group coordinator."""

    def __init__(self, coordinator: Any, generation: int, member_id: str) -> None:
        self._coordinator = coordinator
        self.group_id = coordinator.group_id
        self.generation = generation
        self.member_id = member_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._coordinator, name)


async def joined(settings: Settings, topic: str, group: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
    )
    await consumer.start()
    return consumer


async def until(condition: Any, consumers: list[AIOKafkaConsumer]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, "the group did not settle in time"
        for consumer in consumers:
            await consumer.getmany(timeout_ms=100)


def test_the_coordinator_answers_for_the_current_generation_only(settings: Settings) -> None:
    ensure_topics(settings)
    topic = settings.topic("licenses")
    group = f"{settings.topic_prefix}membership-{uuid.uuid4().hex[:6]}"

    async def scenario() -> None:
        first = await joined(settings, topic, group)
        second: AIOKafkaConsumer | None = None
        try:
            coordinator = first._coordinator
            await until(lambda: bool(first.assignment()), [first])
            generation, member = coordinator.generation, coordinator.member_id
            assert await is_current(coordinator, generation)
            assert not await is_current(StaleView(coordinator, generation, "nobody"), generation)

            # a second member joins: the group moves to a later generation
            second = await joined(settings, topic, group)
            consumers = [first, second]
            await until(
                lambda: coordinator.generation > generation and bool(second.assignment()),
                consumers,
            )
            await until(lambda: second._coordinator.generation == coordinator.generation, consumers)
            assert await is_current(coordinator, coordinator.generation)
            # the first member as a process deposed in the old generation sees it
            assert not await is_current(StaleView(coordinator, generation, member), generation)
            # a consumer that knows of a later generation does not ask for an earlier one
            assert not await is_current(coordinator, generation)
        finally:
            if second is not None:
                await second.stop()
            await first.stop()

    asyncio.run(scenario())
