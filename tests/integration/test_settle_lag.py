"""What `settle` and the lag gauge count when a consumer group's committed offset (or its lack of
one) lies below the log's start: retention removed the records before it, or the group's
offsets expired. kafka-python's default reset jumped a probe seeked there to the end of the
log, so `markers_only` took a real backlog for transaction markers, and `settle` and the gauge
counted nothing (helper-111)."""

from __future__ import annotations

import pytest
from kafka import KafkaProducer, TopicPartition

from schemas import topics
from streams.config.settings import Settings
from streams.kafka.admin import admin_client, ensure_topics
from streams.kafka.settle import group_lag, markers_only_of

pytestmark = pytest.mark.integration


def test_a_backlog_that_begins_below_the_log_start_is_lag(settings: Settings) -> None:
    ensure_topics(settings)
    launches = TopicPartition(settings.topic(topics.LAUNCHES), 0)
    producer = KafkaProducer(**settings.kafka_python(), acks="all")
    try:
        for _ in range(60):
            producer.send(launches.topic, value=b'{"not": "read by anyone"}', partition=0)
        producer.flush()
    finally:
        producer.close(timeout=10)
    admin = admin_client(settings)
    try:
        # what retention does: the first 40 are gone, 20 are left for a group that never read
        admin.delete_records({launches: 40})
    finally:
        admin.close()
    assert markers_only_of(settings, {launches: (0, 60)}) == set()
    assert group_lag(settings) == 60  # nothing committed: all of it is lag
