"""Found by a review of the README against the code (2026-12-05, helper-90).

- `REPLICATION_FACTOR` is "at most the number of brokers" (README, Configuration). Above it,
  `active-learners topics` (and a worker's start on a fresh prefix) waited 10 s and said
  `Kafka: KafkaTimeoutError: Topics not ready after 10000ms: {...}`: kafka-python 3.0.12's
  `create_topics(..., wait_for_metadata=True)` waits for every topic of the request, also the
  ones the broker refused, so `ensure_topics` never reached its own one-line error naming the
  broker's refusal (`InvalidReplicationFactorError`). Seen against the local broker with
  `REPLICATION_FACTOR=2`.

kafka-python's real `create_topics` runs here; only the wire is faked: the controller refuses
every topic as a one-broker cluster does, and a refused topic never becomes ready.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaTimeoutError
from kafka.protocol.admin import CreateTopicsResponse

from streams.cli import main as cli
from streams.kafka import admin as admin_module

INVALID_REPLICATION_FACTOR = 38


class _Manager:
    broker_version = (4, 1)

    def run(self, fn: Any, *args: Any) -> Any:
        return asyncio.run(fn(*args))


class OneBrokerAdmin(KafkaAdminClient):
    """A cluster of one broker, asked for topics of replication factor 2."""

    def __init__(self) -> None:  # no network
        self._manager = _Manager()
        self.config = {"request_timeout_ms": 15_000}
        self.waited_for: list[str] = []

    def list_topics(self) -> list[str]:
        return []

    async def _send_request_to_controller(self, request: Any, *_: Any, **__: Any) -> Any:
        result = CreateTopicsResponse.CreatableTopicResult
        refused = [
            result(
                name=topic.name,
                error_code=INVALID_REPLICATION_FACTOR,
                error_message="Replication factor: 2 larger than available brokers: 1.",
            )
            for topic in request.topics
        ]
        return CreateTopicsResponse(throttle_time_ms=0, topics=refused, version=5)

    def wait_for_topics(self, topic_names: list[str], timeout_ms: int = 10_000) -> None:
        # a topic the broker refused never shows up in its metadata
        self.waited_for.extend(topic_names)
        if topic_names:
            raise KafkaTimeoutError(f"Topics not ready after {timeout_ms}ms: {topic_names}")

    def close(self) -> None:
        pass


def test_topics_a_broker_refuses_are_named_with_its_refusal(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    admin = OneBrokerAdmin()
    monkeypatch.setattr(admin_module, "admin_client", lambda *a, **k: admin)
    monkeypatch.setenv("REPLICATION_FACTOR", "2")

    code = cli.run(["topics"])

    err = capsys.readouterr().err
    assert code == 1
    assert len(err.splitlines()) == 1, err
    assert "could not create topic" in err and "InvalidReplicationFactorError" in err, err
    assert admin.waited_for == []  # no wait for topics that will never come


# - `verify` under a TOPIC_PREFIX whose topics do not exist (mistyped, or `topics` not run yet)
#   printed a mismatch line per window (`live None, recount 4`) and "9 of 9 windows differ from
#   the recount": the live counts looked wrong, where `counts`, `produce`, `settle` and `delete`
#   say "no topic …: run `active-learners topics` first, or check TOPIC_PREFIX" (README,
#   Commands). Seen against the local broker on a fresh prefix.


class NoTopicsAdmin:
    def list_topics(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


def test_verify_under_a_prefix_without_topics_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, tmp_path: Any
) -> None:
    from streams.cli import common
    from streams.kafka import io

    dataset = tmp_path / "launches.jsonl"
    assert cli.run(["generate", "--launches", "50", "--tenants", "2", "--out", str(dataset)]) == 0
    capsys.readouterr()
    monkeypatch.setattr(common, "admin_client", lambda *a, **k: NoTopicsAdmin())
    monkeypatch.setattr(io, "current_counts", lambda *a, **k: {})  # what a missing topic reads
    monkeypatch.setenv("TOPIC_PREFIX", "typo.")

    code = cli.run(["verify", str(dataset)])

    out, err = capsys.readouterr()
    assert code == 1
    assert out == "" and len(err.splitlines()) == 1, (out, err)
    assert "no topic typo.active-learner-counts" in err, err


# - `topics` "reports what it created and what existed" (README, Commands), and ended with
#   `0 created, 16 already existed (12 partitions, replication 1)` over topics of 2 partitions:
#   the count it names is PARTITIONS (or --partitions), which applies to new topics only (the
#   worker says so, and uses the topics' own). Seen against the local broker: `PARTITIONS=2
#   topics`, then `topics`.


def test_topics_names_no_partition_count_for_topics_it_did_not_create(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from schemas.topics import TOPICS
    from streams.cli import ops
    from streams.config.settings import Settings

    settings = Settings.from_env()
    names = tuple(settings.topic(spec.name) for spec in TOPICS)
    existed = admin_module.TopicsReport((), names)
    monkeypatch.setattr(ops, "ensure_topics", lambda *a, **k: existed)

    code = cli.run(["topics", "--partitions", "20"])

    summary = capsys.readouterr().out.splitlines()[-1]
    assert code == 0
    assert summary == f"0 created, {len(names)} already existed", summary

    some_new = admin_module.TopicsReport(names[:1], names[1:])
    monkeypatch.setattr(ops, "ensure_topics", lambda *a, **k: some_new)

    assert cli.run(["topics", "--partitions", "20"]) == 0
    summary = capsys.readouterr().out.splitlines()[-1]
    assert summary == (
        f"1 created, {len(names) - 1} already existed (created with 20 partitions, replication 1)"
    ), summary


# - The worker reads two settings of the fault tests (streams/worker/faults.py:
#   ACTIVE_LEARNERS_CRASH_AT, ACTIVE_LEARNERS_REFUSE_TAKEOVERS), which no table named; a value it
#   cannot read ended `active-learners worker` with a ValueError's traceback when the agents
#   were imported, where every other setting is a one-line error. Seen against the local broker:
#   `ACTIVE_LEARNERS_CRASH_AT=bogus active-learners worker`.


@pytest.mark.parametrize(
    "name, value",
    [
        ("ACTIVE_LEARNERS_CRASH_AT", "bogus"),
        ("ACTIVE_LEARNERS_CRASH_AT", "after-rocksdb:x"),
        ("ACTIVE_LEARNERS_REFUSE_TAKEOVERS", "x"),
    ],
)
def test_a_fault_setting_the_worker_cannot_read_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    import importlib

    from streams.config.settings import ConfigError
    from streams.worker import faults

    monkeypatch.setenv(name, value)
    try:
        with pytest.raises(ConfigError, match=name):
            importlib.reload(faults)
    finally:
        monkeypatch.delenv(name)
        importlib.reload(faults)
