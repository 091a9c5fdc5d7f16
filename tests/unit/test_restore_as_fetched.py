"""A restore reads changelog records as aiokafka parsed them, not as ConsumerRecords.

`read_as_fetched` (streams/worker/recovery.py) changes what its consumer's fetcher hands out:
aiokafka's parsed records instead of a ConsumerRecord made of each (+21 % restored records a
second, docs/benchmarks.md). These tests run aiokafka's own record batches, `PartitionRecords`
and `FetchResult` (no broker): what the restore reads of a record (offset, key, value,
headers) is the same either way; only a consumer the restore changed is changed; and an
aiokafka whose fetcher looks otherwise is left alone, and says so.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from types import SimpleNamespace
from typing import Any

from aiokafka.consumer.fetcher import FetchResult, PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import ConsumerRecord, TopicPartition

import streams.worker.recovery as recovery
from streams.stages import keys
from streams.stages.store import epoch_header
from streams.worker.recovery import BulkRecovery, _AsFetched, read_as_fetched

TP = TopicPartition("prefix-attempts", 3)
ROWS: list[tuple[bytes, bytes | None, Any]] = [
    (b"acme/l1/a1", b'{"attempt_id":"a1"}', epoch_header((1, 0))),
    (b"acme/l2/a2", None, epoch_header((1, 0))),  # a tombstone
    (b"acme/l3/a3", b'{"attempt_id":"a3"}', []),  # a record without the epoch (an old writer)
    (b"acme/l\xc3\xa9/a4", b"x" * 5_000, [("other", b"1"), *epoch_header((2, 7))]),
]


def fetched(base_offset: int = 40) -> MemoryRecords:
    """The bytes of one fetch: a record batch of ROWS from `base_offset` on."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for offset, (key, value, headers) in enumerate(ROWS):
        builder.append(offset, timestamp=None, key=key, value=value, headers=list(headers))
    raw = bytearray(builder.build())
    raw[0:8] = base_offset.to_bytes(8, "big")  # the broker sets a batch's base offset
    return MemoryRecords(bytes(raw))


def partition_records() -> PartitionRecords:
    return PartitionRecords(TP, fetched(), None, 40, None, None, False, 0)


def restore_view(record: Any) -> tuple[Any, ...]:
    """What BulkRecovery._write reads of a record."""
    return record.offset, record.key, record.value, tuple(record.headers)


def test_the_records_handed_out_are_aiokafkas_parsed_ones_with_the_same_fields() -> None:
    plain = list(partition_records())
    assert all(isinstance(record, ConsumerRecord) for record in plain)

    parsed = _parsed(partition_records())

    assert not any(isinstance(record, ConsumerRecord) for record in parsed)
    assert [restore_view(r) for r in parsed] == [restore_view(r) for r in plain]
    assert [r.offset for r in parsed] == [40, 41, 42, 43]
    assert parsed[1].value is None
    assert restore_view(parsed[3])[3] == (("other", b"1"), *epoch_header((2, 7)))


def test_the_restores_write_reads_parsed_records_as_it_reads_consumer_records(
    tmp_path: Any,
) -> None:
    """The restore's write loop (its epoch check reads `headers`) over the parsed records of a
    fetch stores what it stores over ConsumerRecords of the same fetch."""
    import rocksdict

    class Restore(BulkRecovery):
        def __init__(self, db: Any) -> None:  # only the write path: no app, no consumer
            self.db = db

        def _db(self, tp: Any) -> Any:
            return self.db

    stored = []
    for name, records in (
        ("plain", list(partition_records())),
        ("parsed", _parsed(partition_records())),
    ):
        db = rocksdict.Rdict(str(tmp_path / name), options=rocksdict.Options(raw_mode=True))
        try:
            offsets: dict[Any, int] = {}
            written = Restore(db)._write(TP, records, 1_000, offsets)  # type: ignore[arg-type]
            stored.append((written, offsets[TP], dict(db.items())))
        finally:
            db.close()
    assert stored[0] == stored[1]
    written, offset, rows = stored[0]
    assert offset == 43
    assert rows[b"acme/l1/a1"] == b'{"attempt_id":"a1"}'
    assert b"acme/l2/a2" not in rows
    # the record without an epoch came after one of (1, 0): skipped and marked for repair,
    # whichever way it was read; the one of (2, 7) after it is accepted
    assert written == 3
    assert keys.REPAIR + b"acme/l3/a3" in rows and b"acme/l3/a3" not in rows
    assert rows["acme/l\u00e9/a4".encode()] == b"x" * 5_000


def _parsed(records: PartitionRecords) -> list[Any]:
    results: Any = _AsFetched()
    results[TP] = FetchResult(TP, assignment=None, partition_records=records, backoff=0)
    return list(results[TP]._partition_records)


def test_only_the_restores_consumer_is_changed() -> None:
    consumer: Any = SimpleNamespace(_fetcher=SimpleNamespace(_records=OrderedDict()))
    assert read_as_fetched(consumer) is True
    assert isinstance(consumer._fetcher._records, _AsFetched)
    consumer._fetcher._records[TP] = FetchResult(
        TP, assignment=None, partition_records=partition_records(), backoff=0
    )
    assert not isinstance(next(consumer._fetcher._records[TP]._partition_records), ConsumerRecord)
    # another consumer's fetch (the launch reader's, faust's), after the restore's, still makes
    # ConsumerRecords: the change is on the restore's records, not on aiokafka's class
    assert all(isinstance(record, ConsumerRecord) for record in partition_records())


def test_an_aiokafka_whose_fetcher_looks_otherwise_is_left_alone(caplog: Any) -> None:
    without_fetcher: Any = SimpleNamespace()
    assert read_as_fetched(without_fetcher) is False
    other: Any = SimpleNamespace(_fetcher=SimpleNamespace(_records={}))  # not an OrderedDict
    assert read_as_fetched(other) is False
    assert other._fetcher._records == {}
    busy: Any = SimpleNamespace(_fetcher=SimpleNamespace(_records=OrderedDict({TP: object()})))
    assert read_as_fetched(busy) is False  # records already fetched: not this restore's start
    assert "records read one by one" in caplog.text


def test_the_restore_reads_through_a_changed_fetcher(monkeypatch: Any) -> None:
    """`_restore` changes its consumer before it reads (a restore that forgot the call would
    still restore right, only slower: nothing else would notice)."""
    seen: list[Any] = []

    class Consumer:
        def __init__(self, **config: Any) -> None:
            self._fetcher = SimpleNamespace(_records=OrderedDict())

        async def start(self) -> None: ...

        async def stop(self) -> None: ...

        def assign(self, tps: Any) -> None: ...

        def seek(self, tp: Any, offset: int) -> None: ...

        async def getmany(self, *tps: Any, **kwargs: Any) -> dict[Any, Any]:
            seen.append(type(self._fetcher._records))
            return {}

        async def position(self, tp: Any) -> int:
            return 44

    class Restore(BulkRecovery):
        def __init__(self) -> None:
            self.app = None

        def _persist(self, tp: Any, offset: int) -> None: ...

    monkeypatch.setattr(recovery, "AIOKafkaConsumer", Consumer)
    monkeypatch.setattr(recovery, "bootstrap_servers", lambda app: [])
    monkeypatch.setattr(recovery, "kafka_security", lambda app: {})
    asyncio.run(Restore()._restore({TP: 43}, {TP: 39}))
    assert seen == [_AsFetched]


def test_an_aiokafka_whose_records_are_not_made_by_consumer_record_is_left_alone(
    monkeypatch: Any, caplog: Any
) -> None:
    def unpack(self: Any) -> Any:  # a later aiokafka that builds its records inline
        yield ConsumerRecord  # never run

    monkeypatch.setattr(PartitionRecords, "_unpack_records", unpack)
    consumer: Any = SimpleNamespace(_fetcher=SimpleNamespace(_records=OrderedDict()))
    assert read_as_fetched(consumer) is False
    assert type(consumer._fetcher._records) is OrderedDict
    assert "records read one by one" in caplog.text
