"""The read model against the count topic and the service's own rules (no broker).

Found by a review of the read side (2026-12): the read model takes the latest license by
arrival, while the service orders licenses of a grown topic by their timestamps (an old license
left in the topic's old partition won on every worker restart); a license tombstone under a key
that is not UTF-8 removed the license of a tenant whose id holds U+FFFD; the catch-up gate froze
the end offsets of whatever topics the first metadata held; and during a re-cut the API paired
the new license with the old cut's records, answering 0 with a 200 where the count topic holds
the tenant's current count.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import cramjam
import pytest
from aiokafka import TopicPartition

from schemas import topics
from streams.domain.sources import position_of, superseded
from streams.http import api, outputs_reader
from streams.http.read_model import ReadModel
from streams.stages.ingest import tenant_of_key
from tests.unit.test_api import LICENSE, NOW, count


def record(
    partition: int, offset: int, timestamp: int, key: bytes | None, value: bytes | None
) -> Any:
    return SimpleNamespace(
        partition=partition, offset=offset, timestamp=timestamp, key=key, value=value
    )


def reader_of(model: ReadModel, consumer: Any) -> SimpleNamespace:
    """What OutputsReader._read_once needs of its reader: `consumer`, applying the licenses
    and the count records to `model`."""
    applies = {
        "licenses": lambda r: model.apply_license(r.key, r.value),
        "active-learner-counts": lambda r: model.apply_count(r.key, r.value),
    }
    reader = SimpleNamespace(consumer=consumer, applies=applies, end_at_start=None)
    reader.reached_start_ends = lambda: outputs_reader.OutputsReader.reached_start_ends(reader)
    return reader


def test_an_older_license_left_in_an_older_partition_never_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The licenses topic grew: acme's old license stays in partition 0, its new one is in
    partition 3. The service keeps the newer by timestamp whatever order it hears them in
    (streams/domain/sources.py); the read model reads partitions in whatever order a fetch
    returns them, so after a restart it may show the old limit, zone and windows for good."""
    model = ReadModel()
    model.caught_up.set()
    monkeypatch.setattr(outputs_reader, "model", model)
    apply = outputs_reader.SOURCES[topics.LICENSES]
    old = {**LICENSE, "learner_limit": 100, "window_months": 12, "timezone": "Asia/Tokyo"}
    new_at, old_at = 1_790_000_000_000, 1_760_000_000_000
    apply(record(3, 0, new_at, b"acme", json.dumps(LICENSE).encode()))
    apply(record(0, 5, old_at, b"acme", json.dumps(old).encode()))  # fetched last
    # the service: the old one is superseded, the new one governs the count records
    assert superseded(position_of(3, 0, new_at), position_of(0, 5, old_at))

    details = api.tenant_details(model, "acme", NOW)
    assert details["license"]["learner_limit"] == 500, details["license"]
    assert details["window"]["months"] == 3


def test_a_tombstone_whose_key_is_not_utf8_removes_no_license() -> None:
    """The service dead-letters a license tombstone whose key is not a valid tenant id (not
    UTF-8); the read model decoded it with errors="replace" and removed the license of the
    tenant whose id it then spelled (U+FFFD is a valid id character)."""
    tenant = "acme\ufffd"
    model = ReadModel()
    model.caught_up.set()
    model.apply_license(tenant.encode(), json.dumps({**LICENSE, "tenant_id": tenant}).encode())
    assert tenant_of_key(b"acme\xff") is None  # the service: invalid, dead-lettered
    model.apply_license(b"acme\xff", None)
    assert model.license_of(tenant) is not None
    assert api.tenant_details(model, tenant, NOW)["licensed"] is True


class PartialMetadataConsumer:
    """aiokafka with no group assigns the partitions of the subscribed topics that its metadata
    knows (NoGroupCoordinator.assign_all_partitions skips a topic it does not know yet, and
    assigns it at a later metadata update)."""

    def __init__(self, ends: dict[TopicPartition, int], batches: list[dict[TopicPartition, list]]):
        self.ends = ends
        self.batches = batches
        self.positions = {tp: 0 for tp in ends}
        self.known: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return set(self.known)

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list]:
        fetched = self.batches.pop(0) if self.batches else {}
        self.known |= set(fetched)
        for tp, records in fetched.items():
            self.positions[tp] = records[-1].offset + 1
        return fetched

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in tps}

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]


def test_the_read_model_is_not_caught_up_before_it_assigned_every_output_topic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first fetch came while the metadata knew only `licenses`: the end offsets taken then
    are of licenses alone, and caught_up was set (the API answered 200) before one count
    record was read: acme's 452 answered as 0."""
    model = ReadModel()
    monkeypatch.setattr(outputs_reader, "model", model)
    licenses, counts = TopicPartition("licenses", 0), TopicPartition("active-learner-counts", 0)
    consumer = PartialMetadataConsumer(
        {licenses: 1, counts: 1},
        [
            {licenses: [record(0, 0, 0, b"acme", json.dumps(LICENSE).encode())]},
            {
                counts: [
                    record(
                        0,
                        0,
                        0,
                        b"acme/2026-10-01",
                        count("acme", "2026-10-01", "2027-01-01", 452, 842),
                    )
                ]
            },
        ],
    )
    reader = reader_of(model, consumer)

    asyncio.run(outputs_reader.OutputsReader._read_once(reader))
    if model.caught_up.is_set():
        answered = api.tenant_details(model, "acme", NOW)["active_learners"]
        pytest.fail(f"caught up before any count was read: acme answered {answered}")
    asyncio.run(outputs_reader.OutputsReader._read_once(reader))
    assert model.caught_up.is_set()
    assert api.tenant_details(model, "acme", NOW)["active_learners"] == 452


def test_a_re_cut_under_way_answers_the_count_topics_current_record() -> None:
    """acme's license goes from 3-month windows anchored 2026-01-01 to ones anchored
    2026-01-15. Until every learner partition has re-cut, the tenant stage keeps the last exact
    records (publication_ready): the count topic's current record is still 2026-10-01 with 452.
    The API paired the new license with those records and answered 0 active learners with a
    200 - a figure no count record holds, to a client that may bill by it."""
    model = ReadModel()
    model.apply_license(b"acme", json.dumps(LICENSE).encode())
    model.apply_count(b"acme/2026-10-01", count("acme", "2026-10-01", "2027-01-01", 452, 842))
    model.caught_up.set()
    model.apply_license(b"acme", json.dumps({**LICENSE, "cycle_start": "2026-01-15"}).encode())

    summary = api.tenant_summary(model, "acme", NOW)
    published = model.count_record("acme", "2026-10-01")
    assert published is not None
    assert summary["active_learners"] == published["active_learners"], summary
    assert summary["window"] == published["window"], summary


def test_a_new_window_before_its_zero_record_still_answers_zero() -> None:
    """(What the fallback is for, kept: the wall clock entered a window before the tick that
    publishes its zero record.)"""
    model = ReadModel()
    model.apply_license(b"acme", json.dumps(LICENSE).encode())
    model.apply_count(b"acme/2026-10-01", count("acme", "2026-10-01", "2027-01-01", 452, 842))
    model.caught_up.set()
    summary = api.tenant_summary(model, "acme", datetime(2027, 1, 1, 0, 5, tzinfo=UTC))
    assert summary["window"]["start"] == "2027-01-01"
    assert (summary["active_learners"], summary["total_learners"]) == (0, 842)


class FailingOnceConsumer:
    """getmany raises `error` at its first call, then hands out `fetch` once, then nothing."""

    def __init__(self, error: BaseException, fetch: dict[TopicPartition, list[Any]]) -> None:
        self.error: BaseException | None = error
        self.fetch = fetch

    async def getmany(self, timeout_ms: int = 0, max_records: int = 0) -> dict:
        await asyncio.sleep(0)  # (as a fetch does: the loop runs others meanwhile)
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        fetch, self.fetch = self.fetch, {}
        return fetch

    def assignment(self) -> set[TopicPartition]:
        return set()


def test_an_error_of_any_kind_leaves_the_read_model_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Until 2026-12-06 the reader's loop went on after what Kafka and the OS raise only, and
    skipped records whose apply raised ValueError, KeyError or TypeError only: anything else
    (cramjam's DecompressionError on a batch it cannot read; a record no apply expected) ended
    the task, and mode crashed the worker with it. Both are logged now, and reading goes on."""
    model = ReadModel()
    monkeypatch.setattr(outputs_reader, "model", model)
    counts = TopicPartition("active-learner-counts", 0)
    odd = TopicPartition("odd", 0)

    def unexpected(record: Any) -> None:
        raise AttributeError("'list' object has no attribute 'get'")

    consumer = FailingOnceConsumer(
        cramjam.DecompressionError("lz4: ERROR_frameType_unknown"),
        {
            odd: [record(0, 0, 0, b"x", b"[]")],
            counts: [
                record(0, 0, 0, b"acme/2026-10-01", count("acme", "2026-10-01", "2027-01-01", 7, 9))
            ],
        },
    )
    reader = reader_of(model, consumer)
    reader.applies["odd"] = unexpected
    reader._read_once = lambda: outputs_reader.OutputsReader._read_once(reader)
    reader.should_stop = False
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def read_twice() -> None:
        reader.sleep = sleep
        task = asyncio.ensure_future(outputs_reader.OutputsReader._read(reader))
        for _ in range(100):
            if model.count_record("acme", "2026-10-01") is not None:
                break
            await asyncio.sleep(0)
        reader.should_stop = True
        await asyncio.wait_for(task, 5)

    asyncio.run(read_twice())
    assert slept == [1.0]  # the failed fetch waited once, then read again
    assert model.count_record("acme", "2026-10-01")["active_learners"] == 7
