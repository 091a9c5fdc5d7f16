"""`active-learners topics` against the real broker, and a launch round-trip through Kafka."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer

from schemas.launches import Launch
from streams.config import Settings
from streams.kafka_admin import admin_client, ensure_topics, topic_config
from streams.topics import LAUNCHES, TOPICS

pytestmark = pytest.mark.integration


def _run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "TOPIC_PREFIX": settings.topic_prefix,
        "PARTITIONS": str(settings.partitions),
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
