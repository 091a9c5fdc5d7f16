"""Input topics written by producers that compress (gzip, snappy, lz4, zstd).

Kafka clients compress as their producer is configured (Java's `compression.type`, librdkafka's
`compression.codec`; lz4 and zstd are common choices for event pipelines), and the broker keeps
batches as they were sent. Until 2026-12-06 the worker had only Python's gzip: aiokafka raised
`UnsupportedCodecError` on every fetch of a partition holding one lz4, snappy or zstd batch, the
launch reader logged "fetching failed" and fetched the same batch again, for good, and no launch
of the worker's partitions was counted any more (the licenses and deletions read by faust's
consumer stalled the same way); `active-learners report` failed on such a `licenses` topic.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaProducer

from schemas import topics
from streams.cli.deletions import build_request
from streams.config.settings import Settings
from streams.domain.recount import recount, without_deleted
from streams.domain.selectors import Selector
from streams.kafka.io import key_of, read_records, read_topic
from tests.integration.harness import WorkerProcess, wait_for
from tests.integration.test_pipeline import counts_match

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
CODECS = ("gzip", "snappy", "lz4", "zstd")
LICENSE = {"tenant_id": "acme", "cycle_start": "2025-01-01", "window_months": 12}


def launches(codec: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"{codec}-{n}",
            "tenant_id": "acme",
            "learner_id": f"{codec}-l{n % 40}",
            "element_id": "course",
            "attempt_id": f"{codec}-a{n}",
            "launched_at": (NOW - timedelta(minutes=5 + n)).isoformat(),
            "content_type": "scorm",
        }
        for n in range(count)
    ]


def produce_compressed(
    settings: Settings, codec: str, topic: str, records: list[dict[str, Any]]
) -> None:
    """The records sent as one producer with `compression_type=codec` sends them."""
    producer = KafkaProducer(**settings.kafka_python(), acks="all", compression_type=codec)
    try:
        for record in records:
            producer.send(
                settings.topic(topic), key=key_of(topic, record), value=json.dumps(record).encode()
            )
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def test_launches_licenses_and_deletions_of_every_codec_are_counted(
    settings: Settings, worker: WorkerProcess
) -> None:
    sent: list[dict[str, Any]] = []
    for codec in CODECS:
        sent += (batch := launches(codec, 200))
        produce_compressed(settings, codec, "launches", batch)
    produce_compressed(settings, "lz4", "licenses", [LICENSE])
    worker.start()
    wait_for(
        counts_match(settings, recount(sent, {"acme": LICENSE}, NOW)),
        180,
        "every compressed launch counted under the compressed license",
    )
    licenses = [json.loads(r.value) for r in read_records(settings, "licenses")]
    assert licenses == [LICENSE]  # what `active-learners report` reads

    # a physical deletion of one learner, sent zstd-compressed
    request = build_request("acme", "physical", Selector.of("learner_ids", ["zstd-l0"]), NOW)
    produce_compressed(settings, "zstd", "attempt-deletions", [request])
    remaining = without_deleted(sent, request)
    assert len(remaining) < len(sent)
    wait_for(
        counts_match(settings, recount(remaining, {"acme": LICENSE}, NOW)),
        180,
        "the compressed deletion applied",
    )
    receipts = [json.loads(v) for _, v in read_topic(settings, topics.DELETION_RECEIPTS) if v]
    assert [r["request_id"] for r in receipts] == [request["request_id"]]
    assert receipts[0]["error"] is None and receipts[0]["learners_affected"] == 1
    assert read_topic(settings, topics.DEAD_LETTERS, timeout_s=10) == []
