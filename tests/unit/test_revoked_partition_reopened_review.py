"""A report that reads a learner partition after a rebalance revoked it re-opens the partition's
RocksDB, and from then on the worker takes the stale copy for its own (helper-60's review of
2026-12-03; fixed: the reports read through `RocksState.held_reads()`, which checks before each
read and raises `PartitionNotHeld`, answered 503).

`RocksState.scan`/`get_many` reach the DB through faust's `Store._db_for_partition`, which opens
the partition's DB again when it is not in `_dbs` (faust's `revoke_partitions` popped it) and
puts it back into `_dbs`. `RocksState.owns` is `partition in _dbs`: after one report chunk read
during or after a revocation, `owns` says True for a partition another worker now holds. So
`streams/http/reports.placement()` answers that partition from this worker's frozen copy (counted
learners, learner lists, groups, forecast/advisor scans: stale rows, no error) instead of asking
its holder, and the internal endpoint answers other workers from it too; `RocksState.apply`'s
"revoked" guard is bypassed as well."""

from __future__ import annotations

import asyncio
import logging
import types
from datetime import UTC, datetime
from pathlib import Path

import pytest
import rocksdict
from faust.stores.rocksdb import Store
from faust.types import TP

from streams.domain.reports import Span
from streams.stages import keys
from streams.stages import reports as partition_reports
from streams.worker.state import PartitionNotHeld, RocksState

CHANGELOG = "attempts-changelog"


def store_at(tmp_path: Path) -> Store:
    """faust's RocksDB store, only its partition bookkeeping (no app)."""
    store = Store.__new__(Store)
    store._dbs = {}
    store.__dict__["logger"] = logging.getLogger("faust-store")

    def open_for_partition(partition: int) -> rocksdict.Rdict:
        return rocksdict.Rdict(
            str(tmp_path / f"p{partition}"), options=rocksdict.Options(raw_mode=True)
        )

    store._open_for_partition = open_for_partition  # type: ignore[method-assign]
    return store


def test_a_report_never_takes_back_a_revoked_partition(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    table = types.SimpleNamespace(
        data=store, changelog_topic=types.SimpleNamespace(topics={CHANGELOG})
    )
    state = RocksState({keys.ATTEMPTS: table})  # type: ignore[dict-item]
    db = store._db_for_partition(0)  # assigned: faust opens it
    db.put(b"acme/l1/a1", b'{"launched_at":"2026-03-02T10:00:00+00:00"}')
    assert state.owns(keys.ATTEMPTS, 0)

    # a report starts (placement: partition 0 is local), then a rebalance revokes partition 0
    span = Span(
        datetime(2026, 1, 1, tzinfo=UTC).timestamp(), datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    )
    chunks = partition_reports.window_rows(state.held_reads(), 0, "acme", span)
    store.revoke_partitions(table, {TP(CHANGELOG, 0)})
    del db
    assert not state.owns(keys.ATTEMPTS, 0)

    async def read() -> list[list[object]]:
        return [row async for chunk in chunks for row in chunk]

    with pytest.raises(PartitionNotHeld):  # refused; answering from it would be wrong
        asyncio.run(read())
    # the worker must not take the partition back for its own
    assert not state.owns(keys.ATTEMPTS, 0), "a report re-opened a revoked partition"


def test_after_that_reports_read_the_stale_copy_instead_of_asking_its_holder(
    tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from streams.http import reports
    from streams.worker.app import app, settings

    store = store_at(tmp_path)
    table = types.SimpleNamespace(
        data=store, changelog_topic=types.SimpleNamespace(topics={CHANGELOG})
    )
    state = RocksState({keys.ATTEMPTS: table})  # type: ignore[dict-item]
    store._db_for_partition(0).put(b"acme/l1/a1", b'{"launched_at":"2026-03-02T10:00:00+00:00"}')
    store.revoke_partitions(table, {TP(CHANGELOG, 0)})  # partition 0 now belongs to worker B
    # one chunk of a report that had started before the revocation
    with pytest.raises(PartitionNotHeld):
        state.held_reads().get_many(keys.ATTEMPTS, 0, [b"acme/l1/a1"])

    other = "http://worker-b:6066"
    topic = settings.topic("attempts")
    monkeypatch.setattr(reports, "local_state", state)
    monkeypatch.setattr(
        app.assignor, "table_metadata", lambda t: {other: {topic: [0]}} if t == topic else {}
    )
    monkeypatch.setattr(
        reports, "settings", types.SimpleNamespace(topic=settings.topic, partitions=1)
    )
    # worker B holds partition 0: a report must ask it, not read this worker's frozen copy
    assert reports.placement() == {0: other}


def test_a_report_part_of_a_partition_taken_away_is_a_503(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """What the asking client sees: a one-line 503 (before the first byte) or a broken stream,
    never rows of a partition this worker no longer holds."""
    from streams.http import reports
    from streams.http.api import ApiError

    store = store_at(tmp_path)
    table = types.SimpleNamespace(
        data=store, changelog_topic=types.SimpleNamespace(topics={CHANGELOG})
    )
    state = RocksState({keys.ATTEMPTS: table})  # type: ignore[dict-item]
    store._db_for_partition(0).put(b"acme/l1/a1", b'{"launched_at":"2026-03-02T10:00:00+00:00"}')
    store.revoke_partitions(table, {TP(CHANGELOG, 0)})
    monkeypatch.setattr(reports, "local_state", state)
    params = reports.query("acme", Span(0.0, 4_000_000_000.0))

    async def rows() -> list[object]:
        return [chunk async for chunk in reports.local_rows("window", 0, params)]

    async def groups() -> object:
        return await reports.local_aggregate("groups", 0, params)

    for call in (rows, groups):
        with pytest.raises(ApiError) as refused:
            asyncio.run(call())
        assert refused.value.status == 503
    assert not state.owns(keys.ATTEMPTS, 0)
