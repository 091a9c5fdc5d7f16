"""Inputs written by a transactional producer that aborts a transaction.

An LMS may write its topics in transactions (a transactional outbox, Kafka Streams with
exactly-once). An aborted transaction's records stay in the log, marked aborted; until
2026-12-06 every reader of the service read them with Kafka's default isolation
(`read_uncommitted`): the aborted launches were counted (learners billed for launches the LMS
rolled back), an aborted license cut the windows, an aborted deletion deleted. The service reads
`read_committed` now (streams/worker/transport.py for faust's consumer).
"""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaProducer

from schemas import topics
from streams.cli.deletions import build_request
from streams.config.settings import Settings
from streams.domain.recount import recount
from streams.domain.selectors import Selector
from streams.kafka.io import key_of, read_records, read_topic
from streams.kafka.settle import group_lag, wait_until_settled
from tests.integration.harness import WorkerProcess, wait_for
from tests.integration.test_pipeline import counts_match

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
LICENSE = {"tenant_id": "acme", "cycle_start": "2025-01-01", "window_months": 12}
ABORTED_LICENSE = {"tenant_id": "acme", "cycle_start": "2025-01-15", "window_months": 1}


def launches(name: str, learners: int) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"{name}-{n}",
            "tenant_id": "acme",
            "learner_id": f"{name}-l{n}",
            "element_id": "course",
            "attempt_id": f"{name}-a{n}",
            "launched_at": (NOW - timedelta(minutes=5 + n)).isoformat(),
            "content_type": "scorm",
        }
        for n in range(learners)
    ]


def test_an_aborted_transaction_counts_nothing(settings: Settings, worker: WorkerProcess) -> None:
    committed, aborted, later = (
        launches("first", 60),
        launches("aborted", 40),
        launches("later", 30),
    )
    deletion = build_request("acme", "physical", Selector.of("learner_ids", ["first-l0"]), NOW)
    producer = KafkaProducer(
        **settings.kafka_python(), transactional_id=f"{settings.topic_prefix}lms", acks="all"
    )

    def send(topic: str, records: list[dict[str, Any]]) -> None:
        for record in records:
            producer.send(
                settings.topic(topic), key=key_of(topic, record), value=json.dumps(record).encode()
            )

    try:
        producer.init_transactions()
        producer.begin_transaction()
        send(topics.LICENSES, [LICENSE])
        send(topics.LAUNCHES, committed)
        producer.commit_transaction()
        producer.begin_transaction()
        send(topics.LAUNCHES, aborted)
        send(topics.LICENSES, [ABORTED_LICENSE])
        send(topics.ATTEMPT_DELETIONS, [deletion])
        producer.flush()  # in the log, then aborted
        producer.abort_transaction()
        producer.begin_transaction()
        send(topics.LAUNCHES, later)
        producer.commit_transaction()
    finally:
        producer.close(timeout=10)

    worker.start()
    # the later launches come after the aborted ones in every partition: counted, the aborted
    # ones would have been read (and counted) before them
    wait_for(
        counts_match(settings, recount(committed + later, {"acme": LICENSE}, NOW)),
        180,
        "the committed launches counted under the committed license, nothing of the aborted",
    )
    assert [json.loads(r.value) for r in read_records(settings, topics.LICENSES)] == [LICENSE]
    assert read_topic(settings, topics.DELETION_RECEIPTS, timeout_s=10) == []
    assert read_topic(settings, topics.DEAD_LETTERS, timeout_s=10) == []
    # the transactions' markers take offsets of their own: still nothing is left to process
    wait_for(lambda: group_lag(settings) == 0, 60, "no lag (what `settle` waits for)")


def _lag_gauges(worker: WorkerProcess) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=10) as got:
        text = got.read().decode()
    return {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("active_learners_consumer_lag{")
    }


def test_an_aborted_transaction_of_many_launches_at_the_end_holds_nothing_up(
    settings: Settings, worker: WorkerProcess
) -> None:
    """An aborted transaction of 600 launches, the last records of every launches partition
    (about 150 each, more than `settle` reads past by itself): `settle` still ends, and the
    worker's lag gauge falls to 0, where both counted the aborted records and the markers as
    lag for good."""
    committed, aborted = launches("kept", 40), launches("dropped", 600)
    producer = KafkaProducer(
        **settings.kafka_python(), transactional_id=f"{settings.topic_prefix}lms", acks="all"
    )

    def send(records: list[dict[str, Any]]) -> None:
        for record in records:
            producer.send(
                settings.topic(topics.LAUNCHES),
                key=key_of(topics.LAUNCHES, record),
                value=json.dumps(record).encode(),
            )

    try:
        producer.init_transactions()
        producer.begin_transaction()
        send(committed)
        producer.commit_transaction()
        producer.begin_transaction()
        send(aborted)
        producer.flush()
        producer.abort_transaction()
    finally:
        producer.close(timeout=10)

    worker.start()
    wait_for(
        counts_match(settings, recount(committed, {}, NOW)),
        180,
        "the committed launches counted, nothing of the aborted",
    )
    assert group_lag(settings) > 100, "the aborted records stand between the group and the end"
    assert wait_until_settled(settings, timeout_s=120) < 120
    # measured every 15 s: a span that stood two rounds is asked about
    wait_for(
        lambda: _lag_gauges(worker).get("launches") == 0.0,
        120,
        "the worker's lag gauge of launches to fall to 0",
    )
    assert set(_lag_gauges(worker).values()) == {0.0}, _lag_gauges(worker)
