"""The broker's own log cleaner compacting the changelogs while a worker runs.

The simulator models Kafka's cleaner (streams/stages/memory.py, `MemoryLog.compact`); this test
lets the real one work: the changelogs roll a segment every 200 ms and are cleaned as soon as
anything in them is dirty (the test broker's cleaner looks every second), with no day of grace
(the service's `min.compaction.lag.ms`). After a deletion and
licenses changed back and forth (many versions of the same keys), the worker restores over the
gaps compaction left twice, from a wiped state folder and from its own old one, and must then
count new launches, repeats and an erased attempt exactly. Its first run found a bug that has
nothing to do with compaction: the takeover after licenses changed back and forth within one
tick tombstoned two windows' counts (tests/stages/test_found_by_simulation.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from schemas import topics
from streams.cli.deletions import build_request, send_and_wait
from streams.config.settings import Settings
from streams.domain.recount import recount, without_deleted
from streams.domain.selectors import Selector
from streams.kafka.admin import admin_client, topic_config
from streams.kafka.io import read_topic
from streams.stages.store import TABLES
from tests.integration.harness import WorkerProcess, produce_json, wait_for
from tests.integration.test_pipeline import counts_match

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
CHANGELOGS = sorted(changelog for _, changelog in TABLES.values())
# (the service waits a day before cleaning, min.compaction.lag.ms: not here)
CLEAN_AT_ONCE = {
    "segment.ms": "200",
    "min.cleanable.dirty.ratio": "0.001",
    "min.compaction.lag.ms": "0",
}
MONTHLY = {"tenant_id": "acme", "cycle_start": "2025-01-15", "window_months": 1}
YEARLY = {"tenant_id": "acme", "cycle_start": "2025-01-01", "window_months": 12}


def wave(name: str, learners: int, start: int = 0) -> list[dict[str, Any]]:
    """Two launches per learner, each an attempt of its own, within the last 60 days."""
    return [
        {
            "event_id": f"{name}-{n}-{k}",
            "tenant_id": "acme",
            "learner_id": f"l{n}",
            "element_id": "course",
            "attempt_id": f"{name}-{n}-{k}",
            "launched_at": (NOW - timedelta(hours=1 + (n * 7 + k * 13) % (60 * 24))).isoformat(),
            "content_type": "scorm",
        }
        for n in range(start, start + learners)
        for k in range(2)
    ]


def compacted(settings: Settings) -> list[str]:
    """The changelog partitions where the cleaner removed records (offsets with gaps)."""
    consumer = KafkaConsumer(**settings.kafka_python(), enable_auto_commit=False)
    try:
        tps = [
            TopicPartition(settings.topic(name), p)
            for name in CHANGELOGS
            for p in range(settings.partitions)
        ]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        starts, ends = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        seen = dict.fromkeys(tps, 0)
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for tp, records in consumer.poll(timeout_ms=1_000).items():
                seen[tp] += len(records)
        return [f"{tp.topic}/{tp.partition}" for tp in tps if seen[tp] < ends[tp] - starts[tp]]
    finally:
        consumer.close()


def test_restores_over_what_the_log_cleaner_left_are_exact(
    settings: Settings, worker: WorkerProcess
) -> None:
    # set once the worker started: a start gives the changelogs the service's settings again
    worker.start()
    worker.wait_ready()
    admin = admin_client(settings)
    try:
        admin.alter_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, settings.topic(name), CLEAN_AT_ONCE)
                for name in CHANGELOGS
            ]
        )
    finally:
        admin.close()
    wait_for(
        lambda: all(
            topic_config(settings, settings.topic(name), "min.compaction.lag.ms") == "0"
            for name in CHANGELOGS
        ),
        30,
        "the changelogs set to clean at once",
    )
    first = wave("first", 60)
    produce_json(settings, "licenses", [YEARLY])
    produce_json(settings, "launches", first)
    licenses = {"acme": YEARLY}
    wait_for(counts_match(settings, recount(first, licenses, NOW)), 120, "the first wave")

    # the windows cut three more times: every membership and count key written again
    for license_ in (MONTHLY, YEARLY, MONTHLY):
        produce_json(settings, "licenses", [license_])
        wait_for(counts_match(settings, recount(first, {"acme": license_}, NOW)), 120, "recut")
    licenses = {"acme": MONTHLY}
    request = build_request("acme", "physical", Selector.of("learner_ids", ["l1", "l2"]), NOW)
    receipt = send_and_wait(settings, request, 120)
    assert receipt["error"] is None and receipt["learners_affected"] == 2
    kept = without_deleted(first, request)
    second = wave("second", 30, start=40)  # 20 learners again, 10 new
    produce_json(settings, "launches", second)
    expected = recount(kept + second, licenses, NOW)
    wait_for(counts_match(settings, expected), 120, "the second wave")
    # segments roll only when a record arrives after segment.ms: a third wave makes them roll
    third = wave("third", 10, start=100)
    produce_json(settings, "launches", third)
    launches = kept + second + third
    wait_for(counts_match(settings, recount(launches, licenses, NOW)), 120, "the third wave")
    cleaned = wait_for(lambda: compacted(settings), 90, "the log cleaner at work")
    assert any("learner-state-changelog" in name for name in cleaned), cleaned

    for wiped in (True, False):
        worker.stop()
        if wiped:
            worker.wipe()
        worker.start()
        worker.wait_ready()
        tag = "wiped" if wiped else "kept"
        # repeats of every kept attempt, new learners, and a repeat of an erased attempt
        again = wave(f"{tag}-new", 5, start=200 if wiped else 300)
        erased = next(launch for launch in first if launch["learner_id"] == "l1")
        repeat = {**erased, "event_id": f"{tag}-erased-repeat"}
        produce_json(settings, "launches", [*launches, *again, repeat])
        launches = launches + again
        wait_for(
            counts_match(settings, recount(launches, licenses, NOW)),
            120,
            f"exact counts after a restore from a {tag} state folder",
        )

    letters = [json.loads(v) for _, v in read_topic(settings, topics.DEAD_LETTERS) if v]
    erased_letters = [letter for letter in letters if letter["reason"] == "erased"]
    assert len(erased_letters) == 2, letters
    assert worker.alive(), worker.log_tail()
