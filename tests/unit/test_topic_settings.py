"""`active-learners topics` (and every worker start) on a deployment made by an older version:
the service's own topics get the settings it relies on (tombstones kept, commands and receipts
never expired by age); the LMS's input topics keep their operator's; a topic whose settings
cannot be read or changed keeps its own with a warning, and nothing stops.

A fake broker answers kafka-python 3.0.12's real admin code (DescribeConfigs and
IncrementalAlterConfigs as they are sent; only the wire is faked). Found by a review
(2026-12-01): a principal without DescribeConfigs, or a topic another worker created a moment
before, came back with no settings, which kafka-python does not report as an error; the alter
that followed raised a ValueError and every worker died at start with a traceback.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient
from kafka.protocol.admin import (
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
)

from schemas.topics import INPUTS, TOPICS
from streams.cli import main as cli
from streams.config.settings import Settings
from streams.kafka import admin as admin_module

DR = DescribeConfigsResponse.DescribeConfigsResult
ENTRY = DR.DescribeConfigsResourceResult
TOPIC_AUTHORIZATION_FAILED = 29
UNKNOWN_TOPIC_OR_PARTITION = 3


class FakeBroker:
    def __init__(self, topics: dict[str, dict[str, str]], describe_error: dict[str, int]) -> None:
        self.topics = topics  # name -> configs (all keys)
        self.describe_error = describe_error  # name -> error code of DescribeConfigs
        self.altered: list[tuple[str, dict]] = []

    def describe(self, request: Any) -> Any:
        results = []
        for resource in request.resources:
            name = resource[1]
            error = self.describe_error.get(name, 0)
            configs = (
                []
                if error
                else [
                    ENTRY(
                        name=k,
                        value=v,
                        read_only=False,
                        config_source=5,
                        is_default=True,
                        is_sensitive=False,
                        synonyms=[],
                        config_type=0,
                        documentation=None,
                    )
                    for k, v in self.topics[name].items()
                ]
            )
            results.append(
                DR(
                    error_code=error,
                    error_message=None,
                    resource_type=2,
                    resource_name=name,
                    configs=configs,
                )
            )
        return DescribeConfigsResponse(throttle_time_ms=0, results=results, version=4)

    def alter(self, request: Any) -> Any:
        out = []
        for resource in request.resources:
            self.altered.append((resource[1], resource[2]))
            out.append(
                IncrementalAlterConfigsResponse.AlterConfigsResourceResponse(
                    error_code=0, error_message=None, resource_type=2, resource_name=resource[1]
                )
            )
        return IncrementalAlterConfigsResponse(throttle_time_ms=0, responses=out, version=1)


class FakeManager:
    class broker_version_data:
        @staticmethod
        def api_version(_: Any) -> int:
            return 1  # IncrementalAlterConfigs supported (Kafka 4)

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker

    def run(self, fn: Any, *args: Any) -> Any:
        return asyncio.run(fn(*args))

    async def send(self, request: Any, node_id: Any = None) -> Any:
        if isinstance(request, DescribeConfigsRequest):
            return self.broker.describe(request)
        if isinstance(request, IncrementalAlterConfigsRequest):
            return self.broker.alter(request)
        raise AssertionError(type(request))


class FakeAdmin(KafkaAdminClient):
    def __init__(self, broker: FakeBroker, create_error: int = 0) -> None:  # no network
        self._manager = FakeManager(broker)
        self.config = {}
        self.broker = broker
        self.create_error = create_error

    def list_topics(self) -> list[str]:
        return list(self.broker.topics) if not self.create_error else []

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [
            {"name": name, "error_code": 0, "partitions": [{}] * 12}
            for name in names
            if name in self.broker.topics
        ]

    def create_topics(self, request: dict, **_: Any) -> dict:
        self.created = request
        # another worker starting at the same moment created them first
        return {"topics": [{"name": n, "error_code": self.create_error} for n in request]}

    def wait_for_topics(self, names: list[str], **_: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _old_topics(settings: Settings) -> dict[str, dict[str, str]]:
    """Every topic as an older version made it (Kafka's defaults + cleanup.policy)."""
    out = {}
    for spec in TOPICS:
        configs = {
            "retention.ms": "604800000",
            "retention.bytes": "-1",
            "delete.retention.ms": "86400000",
            "min.compaction.lag.ms": "0",
        }
        configs["cleanup.policy"] = "compact" if spec.compacted else "delete"
        out[settings.topic(spec.name)] = configs
    return out


def _run_topics(monkeypatch: pytest.MonkeyPatch, admin: FakeAdmin, capsys: Any) -> tuple[int, str]:
    monkeypatch.setattr(admin_module, "admin_client", lambda *a, **k: admin)
    code = cli.run(["topics"])  # a ValueError escaping here is a traceback for the operator
    return code, capsys.readouterr().err


def test_an_older_versions_topics_of_the_service_get_its_settings_the_inputs_keep_theirs(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    settings = Settings.from_env()
    broker = FakeBroker(_old_topics(settings), {})
    code, _ = _run_topics(monkeypatch, FakeAdmin(broker), capsys)

    assert code == 0
    altered = dict(broker.altered)
    inputs = {settings.topic(name) for name in INPUTS}
    assert not inputs & set(altered)
    for spec in TOPICS:
        name = settings.topic(spec.name)
        if spec.name in INPUTS:
            continue
        wanted = {k: v for k, v in spec.configs().items() if k != "cleanup.policy"}
        changed = {k: v for k, v in wanted.items() if broker.topics[name].get(k) != v}
        sent = {entry[0]: entry[2] for entry in altered.get(name, [])}
        assert sent == changed, spec.name


def test_a_principal_without_describe_configs_starts_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings.from_env()
    topics = _old_topics(settings)
    broker = FakeBroker(topics, {name: TOPIC_AUTHORIZATION_FAILED for name in topics})
    code, err = _run_topics(monkeypatch, FakeAdmin(broker), capsys)

    assert code == 0, err
    assert broker.altered == []
    assert f"could not read the settings of topic {settings.topic('attempts')}" in caplog.text


def test_topics_another_worker_created_a_moment_ago_are_left_alone(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Two workers start at once on a fresh prefix (a StatefulSet with parallel pods): the other
    one created every topic; this one's DescribeConfigs reaches a broker that does not know
    them yet."""
    settings = Settings.from_env()
    topics = {settings.topic(s.name): dict(s.configs()) for s in TOPICS}
    broker = FakeBroker(topics, {name: UNKNOWN_TOPIC_OR_PARTITION for name in topics})
    code, err = _run_topics(monkeypatch, FakeAdmin(broker, create_error=36), capsys)

    assert code == 0, err
    assert broker.altered == []


@pytest.mark.parametrize(("replicas", "min_insync"), [(1, None), (2, None), (3, "2"), (5, "2")])
def test_topics_created_with_three_replicas_or_more_need_two_in_sync(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, replicas: int, min_insync: str | None
) -> None:
    """Kafka's default `min.insync.replicas` is 1: with acks=all, a write the leader alone holds
    (its followers behind) was acknowledged, and lost with the leader's disk: a changelog row,
    a launch, a count restored without it. From three replicas on, created topics need two."""
    monkeypatch.setenv("REPLICATION_FACTOR", str(replicas))
    admin = FakeAdmin(FakeBroker({}, {}))
    code, err = _run_topics(monkeypatch, admin, capsys)

    assert code == 0, err
    assert len(admin.created) == len(TOPICS)
    for name, request in admin.created.items():
        assert request["replication_factor"] == replicas
        assert request["configs"].get("min.insync.replicas") == min_insync, name
