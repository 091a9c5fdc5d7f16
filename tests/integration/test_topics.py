"""`active-learners topics` against the real broker, and a launch round-trip through Kafka."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from schemas.launches import Launch
from schemas.topics import ATTEMPTS, LAUNCHES, LEARNER_COMMANDS, TOMBSTONES_KEPT_MS, TOPICS
from streams.config.settings import Settings
from streams.kafka.admin import admin_client, ensure_topics, topic_config
from streams.tools.worker_process import free_port
from tests.integration.harness import wait_for

pytestmark = pytest.mark.integration


def _run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "TOPIC_PREFIX": settings.topic_prefix,
        "PARTITIONS": str(settings.partitions),
        "WEB_PORT": str(free_port()),  # a worker checks its web port first: 6066 may be taken
    }
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_topics_creates_everything_then_nothing(settings: Settings) -> None:
    first = _run_cli(settings, "topics")
    assert first.returncode == 0, first.stderr
    assert f"{len(TOPICS)} created, 0 already existed" in first.stdout

    admin = admin_client(settings)
    try:
        names = set(admin.list_topics())
    finally:
        admin.close()
    assert {settings.topic(spec.name) for spec in TOPICS} <= names

    second = _run_cli(settings, "topics")
    assert second.returncode == 0, second.stderr
    assert f"0 created, {len(TOPICS)} already existed" in second.stdout


def test_compacted_topics_are_compacted(settings: Settings) -> None:
    ensure_topics(settings)
    for spec in TOPICS:
        policy = topic_config(settings, settings.topic(spec.name), "cleanup.policy")
        assert policy == ("compact" if spec.compacted else "delete"), spec.name


def test_topics_fails_fast_with_one_line_when_broker_unreachable(settings: Settings) -> None:
    from dataclasses import replace

    nowhere = replace(settings, bootstrap_servers="127.0.0.1:1")
    result = _run_cli(nowhere, "topics", "--timeout", "2")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "no Kafka broker answered at 127.0.0.1:1" in result.stderr


def test_launch_round_trips_through_kafka_and_validates(settings: Settings) -> None:
    ensure_topics(settings)
    topic = settings.topic(LAUNCHES)
    event = {
        "event_id": str(uuid.uuid4()),
        "tenant_id": "acme",
        "learner_id": "l-1",
        "element_id": "course-7",
        "attempt_id": "a-1",
        "launched_at": "2026-03-01T10:00:00+01:00",
        "content_type": "scorm",
    }
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    producer.send(topic, key=b"acme/l-1", value=json.dumps(event).encode()).get(timeout=30)
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=30_000,
    )
    try:
        record = next(iter(consumer))
    finally:
        consumer.close()
    assert record.key == b"acme/l-1"
    launch = Launch.model_validate_json(record.value)
    assert launch.event_id == event["event_id"]
    assert launch.launched_at.utcoffset().total_seconds() == 3600


def test_a_worker_uses_the_partition_count_its_topics_have(settings: Settings, tmp_path) -> None:
    """Topics made with 6 partitions, PARTITIONS=4: licenses and deletions reach all 6."""
    from dataclasses import replace

    from streams.kafka.io import current_counts
    from tests.integration.harness import WorkerProcess, produce_json, wait_for

    ensure_topics(replace(settings, partitions=6))
    launches = [
        {
            "event_id": f"e{n}",
            "tenant_id": "acme",
            "learner_id": f"l{n}",
            "element_id": "x",
            "attempt_id": "a",
            "launched_at": "2026-05-10T12:00:00Z",
        }
        for n in range(60)
    ]
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        produce_json(settings, "launches", launches)
        wait_for(
            lambda: (
                current_counts(settings).get(("acme", "2026-01-01"), {}).get("active_learners")
                == 60
            ),
            120,
            "60 learners in calendar 2026",
        )
        # a monthly license re-cuts every partition: all 60 must land in May
        produce_json(
            settings,
            "licenses",
            [{"tenant_id": "acme", "cycle_start": "2026-01-01", "window_months": 1}],
        )
        wait_for(
            lambda: (
                current_counts(settings).get(("acme", "2026-05-01"), {}).get("active_learners")
                == 60
            ),
            120,
            "all 60 re-cut into May",
        )
        assert "using 6" in (tmp_path / "worker.log").read_text()
    finally:
        worker.stop()


def test_a_worker_refuses_topics_that_disagree(settings: Settings) -> None:
    admin = admin_client(settings)
    try:
        from kafka.admin import NewTopic

        admin.create_topics(
            [
                NewTopic(settings.topic("learner-commands"), 6, 1),
                NewTopic(settings.topic("tenant-commands"), 4, 1),
            ]
        )
        # both in the broker's metadata before the worker looks: with one of them still
        # unseen, the worker would make it with the other's count, and nothing disagrees
        admin.wait_for_topics(
            [settings.topic("learner-commands"), settings.topic("tenant-commands")],
            timeout_ms=15_000,
        )
    finally:
        admin.close()
    result = _run_cli(settings, "worker", "--timeout", "10")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "disagree" in lines[0] and "learner-commands 6" in lines[0]


def test_topics_made_by_an_older_version_get_the_retention_this_one_needs(
    settings: Settings,
) -> None:
    """Before, compacted topics dropped their tombstones after a day and the stages' commands
    expired after a week; the next `topics` (or worker start) sets them, and says so."""
    admin = admin_client(settings)
    try:
        admin.create_topics(
            [
                NewTopic(
                    settings.topic(ATTEMPTS),
                    settings.partitions,
                    1,
                    topic_configs={"cleanup.policy": "compact", "delete.retention.ms": "86400000"},
                ),
                NewTopic(settings.topic(LEARNER_COMMANDS), settings.partitions, 1),
            ]
        )
    finally:
        admin.close()
    result = _run_cli(settings, "topics")
    assert result.returncode == 0, result.stderr
    updated = sorted(line.split()[1] for line in result.stdout.splitlines() if "updated" in line)
    assert updated == sorted([settings.topic(ATTEMPTS), settings.topic(LEARNER_COMMANDS)])

    def applied() -> bool:  # the broker applies a change of configuration a moment later
        for spec in TOPICS:
            name = settings.topic(spec.name)
            keeps = topic_config(settings, name, "delete.retention.ms") == TOMBSTONES_KEPT_MS
            forever = topic_config(settings, name, "retention.ms") == "-1"
            if (spec.compacted and not keeps) or (
                (spec.purged_when_consumed or spec.retained_forever) and not forever
            ):
                return False
        return True

    wait_for(applied, 30, "the retention of every topic as this version needs it")
    again = _run_cli(settings, "topics")
    assert "updated" not in again.stdout
