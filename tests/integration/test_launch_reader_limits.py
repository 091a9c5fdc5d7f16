"""A `learner-commands` topic whose `max.message.bytes` is below the launch reader's commands.

An operator may set a topic's limit below the 1 MB the service's commands may reach. The broker
then refuses a fetch's commands for their size; until 2026-12-03 the launch reader read that fetch
again for good, and no launch of its partitions was counted any more (helper-61's review, shown
there with a fake producer). Here the real broker refuses them: the reader routes the fetch again
one launch at a time, and every launch is counted, none dead-lettered (each launch's own command
fits).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from schemas import topics
from streams.config.settings import Settings
from streams.domain.recount import recount
from streams.kafka.admin import admin_client, topic_config
from streams.kafka.io import read_topic
from tests.integration.harness import WorkerProcess, produce_json, wait_for
from tests.integration.test_pipeline import counts_match

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
LIMIT = "4096"  # bytes: a command of one launch fits, one of a fetch's launches does not


def launches(count: int) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"e{n}",
            "tenant_id": "acme",
            "learner_id": f"l{n % 300}",
            "element_id": "course",
            "attempt_id": f"a{n}",
            "launched_at": (NOW - timedelta(minutes=5 + n)).isoformat(),
            "content_type": "scorm",
        }
        for n in range(count)
    ]


def test_commands_the_broker_refuses_for_size_are_routed_one_launch_at_a_time(
    settings: Settings, worker: WorkerProcess
) -> None:
    worker.start()
    worker.wait_ready()
    commands_topic = settings.topic(topics.LEARNER_COMMANDS)
    set_max_message_bytes(settings, topics.LEARNER_COMMANDS, LIMIT)
    # a backlog: the restarted worker's first fetch holds every launch, and its commands (about
    # 150 launches a learner partition) far exceed the limit
    worker.stop()
    sent = launches(600)
    produce_json(settings, "launches", sent)
    worker.start()
    wait_for(counts_match(settings, recount(sent, {}, NOW)), 180, "every launch counted")
    assert topic_config(settings, commands_topic, "max.message.bytes") == LIMIT
    assert read_topic(settings, topics.DEAD_LETTERS, timeout_s=10) == []
    # the reader did take the fetches apart (a command of all of them would have been refused)
    log = worker.log_path.read_text(errors="replace")
    assert "one launch at a time" in log


def set_max_message_bytes(settings: Settings, topic: str, limit: str) -> None:
    """Lower a topic's `max.message.bytes`, as an operator may."""
    name = settings.topic(topic)
    # (AlterConfigs sets a topic's whole config: the service's own settings go with the limit,
    # or the worker's next start would set them again and the limit with them back, and a
    # compacted topic would become one that deletes)
    config = dict(topics.TOPICS_BY_NAME[topic].configs())
    config["max.message.bytes"] = limit
    admin = admin_client(settings)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, config)])
    finally:
        admin.close()
    wait_for(
        lambda: topic_config(settings, name, "max.message.bytes") == limit,
        30,
        f"the {topic} limit set",
    )
