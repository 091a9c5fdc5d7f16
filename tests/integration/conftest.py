"""Integration fixtures: a real Kafka broker for the session, a fresh topic prefix per test.

The broker is started by the test session itself (docker/kafka/kafka.sh) when nothing answers on
KAFKA_BOOTSTRAP_SERVERS, and stopped at the end if this session started it. A broker that cannot
be started is an error, never a skip.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.errors import KafkaError

from streams.config.settings import Settings
from streams.kafka.admin import (
    BrokerUnavailable,
    broker_answers,
    delete_topics_with_prefix,
    ensure_topics,
)
from tests.integration.contract import contract_violations
from tests.integration.harness import WorkerProcess

REPO = Path(__file__).resolve().parents[2]
KAFKA_SCRIPT = REPO / "docker" / "kafka" / "kafka.sh"


@pytest.fixture(scope="session")
def broker() -> Iterator[Settings]:
    settings = Settings.from_env()
    started_here = False
    if not broker_answers(settings):
        result = subprocess.run(
            ["bash", str(KAFKA_SCRIPT), "start"], capture_output=True, text=True, timeout=600
        )
        if result.returncode != 0:
            pytest.fail(
                f"could not start the Kafka broker:\n{result.stdout}\n{result.stderr}",
                pytrace=False,
            )
        started_here = True
        if not broker_answers(settings):
            pytest.fail(f"Kafka broker started but does not answer at {settings.bootstrap_servers}")
    yield settings
    if started_here and not os.environ.get("KEEP_KAFKA"):
        subprocess.run(["bash", str(KAFKA_SCRIPT), "stop"], capture_output=True, timeout=120)


@pytest.fixture
def prefix() -> str:
    """A fresh TOPIC_PREFIX for one test, so tests never see each other's records."""
    return f"test-{uuid.uuid4().hex[:10]}-"


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A worker process for this test's prefix (not started: the test decides when)."""
    ensure_topics(settings)
    process = WorkerProcess(settings, tmp_path / "worker.log")
    yield process
    process.stop()


@pytest.fixture
def settings(broker: Settings, prefix: str, tmp_path: Path) -> Iterator[Settings]:
    """This test's settings; its topics are deleted afterwards (a local broker would otherwise
    gather thousands of them over a few runs of the suite)."""
    from dataclasses import replace

    test_settings = replace(broker, topic_prefix=prefix, state_dir=tmp_path / "state", partitions=4)
    yield test_settings
    try:
        # every record the test made the service write, against the published JSON Schemas
        _, violations = contract_violations(test_settings)
    except (KafkaError, BrokerUnavailable) as exc:  # a test may have stopped the broker
        print(f"could not check the output topics {prefix}*: {exc!r}")
        violations = []
    try:
        delete_topics_with_prefix(broker, prefix)
    except (KafkaError, BrokerUnavailable) as exc:  # a test may have stopped the broker
        print(f"could not delete the topics {prefix}*: {exc!r}")
    assert not violations, "output records that break the published JSON Schemas:\n" + "\n".join(
        violations[:20]
    )
