"""The stages' handlers over dict-backed state: replays re-send, counters follow durability.

`FakeBatch` stands in for streams.state.StateBatch: table writes go to dicts, outputs to a list,
and `on_durable` callbacks run only when the test says the batch became durable. No broker.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from streams import messages
from streams.agents.learners import LearnerStage
from streams.agents.tenants import TenantStage

NOW = datetime(2026, 3, 20, tzinfo=UTC)
LICENSE = {
    "tenant_id": "acme",
    "cycle_start": "2026-01-01",
    "window_months": 1,
    "learner_limit": 2,
    "thresholds": [50, 100],
    "notify": [],
    "timezone": "UTC",
}


class FakeBatch:
    def __init__(self, tables: dict[tuple[str, int, bytes], Any] | None = None) -> None:
        self.tables = tables if tables is not None else {}
        self.outputs: list[tuple[str, bytes | None, Any]] = []
        self.callbacks: list[Callable[[], None]] = []

    def get(self, table: Any, partition: int, key: bytes) -> Any:
        return self.tables.get((table.name, partition, key))

    def get_many(self, table: Any, partition: int, keys: list[bytes]) -> list[Any]:
        return [self.get(table, partition, key) for key in keys]

    def put(self, table: Any, partition: int, key: bytes, value: Any) -> None:
        self.tables[(table.name, partition, key)] = json.loads(json.dumps(value))

    def delete(self, table: Any, partition: int, key: bytes) -> None:
        self.tables.pop((table.name, partition, key), None)

    def has_writes(self, table: Any, partition: int) -> bool:
        return True  # read erasure markers through get_many, not RocksDB

    def emit(
        self, topic: str, key: bytes | None, value: bytes | None, partition: Any = None
    ) -> None:
        self.outputs.append((topic, key, value))

    def on_durable(self, callback: Callable[[], None]) -> None:
        self.callbacks.append(callback)

    async def flush(self) -> None:
        self.durable()

    def durable(self) -> None:
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()

    def kinds(self) -> list[str]:
        return sorted(topic for topic, _, _ in self.outputs)


def partials(active: int, total: int, seq: int, epoch: int = 1) -> dict[str, Any]:
    cut = "2026-01-01/1/UTC"
    parts = {
        "epoch": epoch,
        "seq": seq,
        "cut": cut,
        "windows": {"2026-03-01": active},
        "total": total,
    }
    return messages.partials_command({"acme": {"0": parts}})


def licensed_tenant_stage() -> tuple[TenantStage, FakeBatch]:
    stage = TenantStage(learner_partitions=1)
    batch = FakeBatch()
    stage.on_partials(batch, 0, 1, partials(0, 0, seq=1), NOW)
    asyncio_run(stage.on_license(batch, 0, 2, messages.license_command("acme", LICENSE), NOW))
    stage.on_partials(batch, 0, 3, partials(0, 0, seq=2), NOW)
    batch.outputs.clear()
    return stage, batch


def asyncio_run(coro: Any) -> Any:
    import asyncio

    return asyncio.run(coro)


def test_a_replay_sends_again_what_its_command_sent() -> None:
    stage, batch = licensed_tenant_stage()
    stage.on_partials(batch, 0, 10, partials(2, 2, seq=5), NOW)
    first = batch.kinds()
    assert "active-learner-counts" in first and "threshold-events" in first
    sent = [value for _, _, value in batch.outputs if value is not None]

    # the state reached the changelog, the outputs did not: the same command comes again
    replay = FakeBatch(batch.tables)
    stage.on_partials(replay, 0, 10, partials(2, 2, seq=5), NOW)
    assert replay.kinds() == first
    events = [json.loads(v) for t, _, v in replay.outputs if t == "threshold-events"]
    assert sorted(e["event_id"] for e in events) == sorted(
        json.loads(v)["event_id"] for t, _, v in batch.outputs if t == "threshold-events"
    )
    assert len(sent) == len([v for _, _, v in replay.outputs if v is not None])

    # a later command with nothing new sends nothing
    later = FakeBatch(batch.tables)
    stage.on_partials(later, 0, 11, partials(2, 2, seq=5), NOW)
    assert later.outputs == []


def test_a_replayed_last_part_sends_its_receipt_again_and_a_redelivered_request_does_not() -> None:
    stage = TenantStage(learner_partitions=1)
    batch = FakeBatch()
    request = {"request_id": "r1", "tenant_id": "acme", "mode": "preview", "requested_at": "x"}
    report = {"attempts_affected": 3, "learners_affected": 1, "windows": {}}
    part = {"type": "deletion-part", "request": request, "part": 0, "parts": 1, "partition": 0}
    stage.on_deletion_part(batch, 0, 7, {**part, "report": report}, NOW)
    assert batch.kinds() == ["deletion-receipts"]

    replay = FakeBatch(batch.tables)
    stage.on_deletion_part(replay, 0, 7, {**part, "report": report}, NOW)
    assert replay.outputs == batch.outputs  # the identical receipt

    again = FakeBatch(batch.tables)
    stage.on_deletion_part(again, 0, 8, {**part, "report": report}, NOW)  # sent twice
    assert again.outputs == []


def test_an_invalid_request_sent_twice_gets_one_error_receipt() -> None:
    stage = TenantStage(learner_partitions=1)
    batch = FakeBatch()
    receipt = {"request_id": "bad", "tenant_id": "acme", "error": "no selector"}
    stage.on_deletion_error(batch, 0, 3, messages.deletion_error_command(receipt))
    stage.on_deletion_error(batch, 0, 4, messages.deletion_error_command(receipt))
    assert batch.kinds() == ["deletion-receipts"]


def test_a_recut_holds_the_last_records_until_every_partition_reported_on_it() -> None:
    stage = TenantStage(learner_partitions=2)
    batch = FakeBatch()
    cut = "2026-01-01/1/UTC"

    def report(partition: int, cut_id: str, active: int, seq: int) -> dict[str, Any]:
        part = {
            "epoch": 1,
            "seq": seq,
            "cut": cut_id,
            "windows": {"2026-03-01": active},
            "total": active,
        }
        return messages.partials_command({"acme": {str(partition): part}})

    asyncio_run(stage.on_license(batch, 0, 1, messages.license_command("acme", LICENSE), NOW))
    stage.on_partials(batch, 0, 2, report(0, cut, 1, 1), NOW)
    stage.on_partials(batch, 0, 3, report(1, cut, 1, 1), NOW)
    batch.outputs.clear()

    tokyo = {**LICENSE, "timezone": "Asia/Tokyo"}
    asyncio_run(stage.on_license(batch, 0, 4, messages.license_command("acme", tokyo), NOW))
    stage.on_partials(batch, 0, 5, report(0, "2026-01-01/1/Asia/Tokyo", 1, 2), NOW)
    assert batch.outputs == [], "half the partitions re-cut: nothing is published, nothing fires"
    stage.on_partials(batch, 0, 6, report(1, "2026-01-01/1/Asia/Tokyo", 1, 2), NOW)
    records = [json.loads(v) for t, _, v in batch.outputs if t == "active-learner-counts" and v]
    assert records and all(r["active_learners"] == 2 for r in records)
    assert "threshold-events" not in batch.kinds(), "2 of 2 before and after: no crossing"


@pytest.fixture
def learner_stage() -> LearnerStage:
    return LearnerStage()


def test_counters_change_only_once_the_batch_is_durable(learner_stage: LearnerStage) -> None:
    batch = FakeBatch()
    rows = [["acme", "l1", "e", "a1", "2026-03-05T10:00:00+00:00", 0, 0, "{}"]]
    command = messages.attempts_command("launches", rows)
    asyncio_run(learner_stage.on_attempts(batch, command, 0, 42))
    assert learner_stage.counters.take_dirty() == [], "nothing reported before it is durable"
    batch.durable()
    [(partition, tenant, counts)] = learner_stage.counters.take_dirty()
    assert (partition, tenant, counts.total, counts.seq) == (0, "acme", 1, 42)
