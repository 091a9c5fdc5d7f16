"""Restoring table partitions from their changelogs in bulk, before faust's own recovery looks.

faust restores a changelog record by record (≈ 3,300 records/s measured here: a `wait_first`,
a JSON decode nobody uses and a queue hand-off per record). When a worker is assigned table
partitions, `BulkRecovery` first reads each one's changelog from the offset stored in its RocksDB
to the end with a plain aiokafka consumer, writes whole fetches with one WriteBatch, and stores
the offset reached. faust then finds nothing left to read and resumes the streams.

Every changelog record carries its writer's epoch (streams/stages/store.py). A record whose epoch
is lower than one already applied to the partition was written by a deposed owner after its
successor took over: it is skipped, and its key is marked in the same write (`keys.REPAIR`, local
only, naming the skipped records' offsets) so that the new owner writes that key's true value
again, answers what those records say (`DurableBatch.repair_marked`), and the last record of
every key in the topic is right. The mark is on disk: a crash before the repair keeps it.

It hooks into faust's `Recovery._build_offsets` (faust-streaming 0.15, pinned in pyproject.toml):
that step runs in faust's recovery task after the highwaters are known and before the consumer
seeks, and it may take as long as the data needs (faust's own timeout for it is lifted here).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import rocksdict
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP

from streams.stages import keys
from streams.stages.store import (
    EPOCH_HEADER,
    NO_EPOCH,
    Epoch,
    epoch_header,
    mark_value,
    marked_offsets,
    parse_epoch,
    starts_afresh,
)
from streams.worker.malloc import large_buffers_from_the_heap
from streams.worker.state import OFFSET_KEY

log = logging.getLogger(__name__)

FETCH_RECORDS = 20_000


@dataclass(frozen=True)
class Restored:
    """What a recovery that ends restored: the consumer group's generation it ran for and each
    table's partitions. The stages take over exactly these (streams/worker/takeovers.py), not
    the consumer's assignment of the moment, which a later rebalance may already have changed
    in faust's consumer thread while this recovery's callbacks run."""

    generation: int
    partitions: Mapping[str, tuple[int, ...]]  # table name -> its restored partitions


# What the recovery whose on_recover callbacks run in this context restored (None: nothing, it
# was superseded). faust starts each table's callbacks in a task of its own, which copies the
# context: a callback that starts late (a table's callbacks run one after the other, in a set's
# order, and the one before may wait on Kafka) still reads its own recovery's, never a newer
# one's that ended meanwhile, which would make it a second takeover of that newer generation
# (helper-123).
RESTORED: ContextVar[Restored | None] = ContextVar("restored", default=None)


class BulkRecovery(Recovery):
    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        # faust runs the tables' on_recover callbacks (the stages' takeovers) in here; what they
        # may take over is decided first, with no await in between: a rebalance that the main
        # thread has seen since this recovery began makes it nothing
        restored = None
        if generation_id == self._generation_id:
            restored = Restored(
                generation_id,
                {
                    table.name: tuple(sorted(tp.partition for tp in tps))
                    for table, tps in self.actives_for_table.items()
                },
            )
        RESTORED.set(restored)
        await super().on_recovery_completed(generation_id)

    async def _build_offsets(self, consumer: Any, tps: Any, destination: Any, title: str) -> None:
        await super()._build_offsets(consumer, tps, destination, title)
        if title == "active" and tps:
            await self.bulk_restore(set(tps), destination)

    async def _wait(self, coro: Any, timeout: Any = None) -> None:
        # faust bounds each recovery step by broker_request_timeout (90 s); restoring millions
        # of records may take longer, and a timeout here would stop the recovery service.
        if getattr(coro, "cr_code", None) is BulkRecovery._build_offsets.__code__:
            timeout = None
        await super()._wait(coro, timeout)

    async def bulk_restore(self, tps: set[TP], offsets: Any) -> None:
        """Read every changelog partition in `tps` from `offsets[tp] + 1` to its highwater."""
        for tp in tps:
            if self._past_the_end(tp, offsets[tp]):
                self._forget(tp, offsets, "stored an offset past the changelog's end")
                offsets[tp] = -1  # nothing read (faust's check and seek take no None)
            elif self._marked_and_moved_on(tp, offsets[tp]):
                self._forget(tp, offsets)
        todo = {
            tp: self.active_highwaters[tp]
            for tp in tps
            if self.active_highwaters.get(tp, -1) >= 0
            and (offsets[tp] if offsets[tp] is not None else -1) < self.active_highwaters[tp]
        }
        if not todo:
            return
        with large_buffers_from_the_heap():
            await self._restore(todo, offsets)

    async def _restore(self, todo: dict[TP, int], offsets: Any) -> None:
        started, restored = time.monotonic(), 0
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers(self.app),
            group_id=None,
            enable_auto_commit=False,
            # a seek below the changelog's first offset (records removed by DeleteRecords) reads
            # from its first record: aiokafka's default, the end, would take a partition read
            # from nothing for one restored (helper-94)
            auto_offset_reset="earliest",
            check_crcs=False,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
            **kafka_security(self.app),
        )
        await consumer.start()
        try:
            read_as_fetched(consumer)
            by_kafka = {TopicPartition(tp.topic, tp.partition): tp for tp in todo}
            consumer.assign(list(by_kafka))
            for ktp, tp in by_kafka.items():
                start = offsets[tp] if offsets[tp] is not None else -1
                consumer.seek(ktp, start + 1)
            remaining = set(by_kafka)
            while remaining:
                fetched = await consumer.getmany(
                    *remaining, timeout_ms=1000, max_records=FETCH_RECORDS
                )
                for ktp, records in fetched.items():
                    tp = by_kafka[ktp]
                    restored += self._write(tp, records, todo[tp], offsets)
                for ktp in list(remaining):
                    tp = by_kafka[ktp]
                    if await consumer.position(ktp) > todo[tp]:
                        remaining.discard(ktp)
                        if offsets[tp] is None or offsets[tp] < todo[tp]:
                            # compaction left a gap up to the highwater: nothing more to read
                            self._persist(tp, todo[tp])
                            offsets[tp] = todo[tp]
        finally:
            await consumer.stop()
        elapsed = time.monotonic() - started
        log.info(
            "restored %d changelog records of %d partitions in bulk in %.1fs (%.0f records/s)",
            restored,
            len(todo),
            elapsed,
            restored / elapsed if elapsed > 0 else 0.0,
        )

    def _write(self, tp: TP, records: list[Any], highwater: int, offsets: Any) -> int:
        if records and records[-1].offset > highwater:
            records = [record for record in records if record.offset <= highwater]
        if not records:
            return 0
        db = self._db(tp)
        fence = self._fence(db)
        batch = rocksdict.WriteBatch(raw_mode=True)
        put, delete = batch.put, batch.delete
        skips = 0
        marks: dict[bytes, list[int]] = {}  # skipped keys -> the offsets of their records
        # This loop runs for every record restored. The service writes one header, the epoch,
        # and a fetch holds a few distinct ones, so the fence is compared only when it changes.
        raw: Any = None
        current: Any = _NOTHING
        accept = True
        for record in records:
            headers = record.headers
            raw = headers[0][1] if headers and headers[0][0] == EPOCH_HEADER else _epoch(headers)
            if raw != current:
                current = raw
                epoch = NO_EPOCH if raw is None else parse_epoch(raw)
                accept = epoch >= fence
                if accept:
                    fence = epoch
            if not accept:
                marks.setdefault(record.key, []).append(record.offset)
                skips += 1
            elif record.value is None:
                delete(record.key)
            else:
                put(record.key, record.value)
        if marks:
            names = [keys.REPAIR + key for key in marks]
            for name, skipped, stored in zip(names, marks.values(), db.get(names), strict=True):
                put(name, mark_value([*skipped, *marked_offsets(stored)]))
        last = records[-1].offset
        batch.put(OFFSET_KEY, str(last).encode())
        batch.put(keys.FENCE, epoch_header(fence)[0][1])
        db.write(batch)
        offsets[tp] = last
        return len(records) - skips

    def _marked_and_moved_on(self, tp: TP, stored: int | None) -> bool:
        """Whether this state folder's partition holds repair marks (`stages.store.restore_rule`)
        and its changelog has records after the stored offset: `starts_afresh` says why."""
        moved_on = stored is not None and self.active_highwaters.get(tp, -1) > stored
        return starts_afresh(moved_on, moved_on and any_key_from(self._db(tp), keys.REPAIR))

    def _past_the_end(self, tp: TP, stored: int | None) -> bool:
        """Whether this state folder's partition stored an offset the changelog never reached:
        its rows are another changelog's (the topics deleted and made again, a STATE_DIR used
        with another TOPIC_PREFIX before: faust's folders do not name it) or records Kafka no
        longer has. Kept, they were counted with the deployment's, and their fence made its own
        records a deposed owner's; faust's consistency check stopped the worker at every start
        instead, except at a stored offset of 0 (helper-91). A partition without a highwater
        was assigned by a rebalance after they were read (faust changes the set this recovery
        reads in place): nothing to decide, the recovery the rebalance starts reads it
        (helper-94)."""
        highwater = self.active_highwaters.get(tp)
        return stored is not None and highwater is not None and stored > highwater

    def _forget(
        self,
        tp: TP,
        offsets: Any,
        why: str = "marked records of a deposed owner, and the changelog has moved on since",
    ) -> None:
        self._db(tp).delete_range(b"", b"\xff")  # every key: UTF-8 never has 0xff
        offsets[tp] = None
        log.warning(
            "%s/%d: the state folder %s: restored from its start", tp.topic, tp.partition, why
        )

    @staticmethod
    def _fence(db: Any) -> Epoch:
        raw = db.get(keys.FENCE)
        return parse_epoch(raw) if raw else NO_EPOCH

    def _persist(self, tp: TP, offset: int) -> None:
        self._db(tp).put(OFFSET_KEY, str(offset).encode())

    def _db(self, tp: TP) -> Any:
        return self.tp_to_table[tp].data._db_for_partition(tp.partition)  # type: ignore[attr-defined]


class BulkTableManager(TableManager):
    """faust's table manager, with `BulkRecovery` as its recovery service."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = BulkRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


_NOTHING = object()  # no header seen yet (None is a record without one)


def read_as_fetched(consumer: AIOKafkaConsumer) -> bool:
    """Have `consumer.getmany` answer the records as aiokafka parsed them from the fetch (with
    `offset`, `key`, `value` and `headers`, all the restore reads) instead of a `ConsumerRecord`
    made of each: making those was a third of the restore's CPU, and the restore reads millions
    (+21 % records a second without them: docs/benchmarks.md). Only this consumer changes, and
    it is the restore's own.

    It reaches into the fetcher of aiokafka 0.11 to 0.14 (pinned below 0.15 in pyproject.toml):
    the fetched partitions wait in `Fetcher._records`, each one's records in a
    `PartitionRecords` that asks its `_consumer_record` for what to hand out. Where that is not
    so (another aiokafka), it changes nothing and says so (False): the restore then reads
    ConsumerRecords, which have the same attributes, only slower."""
    fetcher: Any = getattr(consumer, "_fetcher", None)
    pending = getattr(fetcher, "_records", None)
    if not isinstance(pending, OrderedDict) or pending or not _hands_out_by_consumer_record():
        log.warning("restore: aiokafka's fetcher is not as expected; records read one by one")
        return False
    fetcher._records = _AsFetched()
    return True


def _hands_out_by_consumer_record() -> bool:
    """Whether aiokafka's `PartitionRecords` makes each record it hands out with its
    `_consumer_record`, and takes one set on an instance (no `__slots__`)."""
    try:
        from aiokafka.consumer.fetcher import PartitionRecords
    except ImportError:
        return False
    unpack = getattr(getattr(PartitionRecords, "_unpack_records", None), "__code__", None)
    return (
        callable(getattr(PartitionRecords, "_consumer_record", None))
        and "__slots__" not in vars(PartitionRecords)
        and unpack is not None
        and "_consumer_record" in unpack.co_names
    )


class _AsFetched(OrderedDict[Any, Any]):
    """The fetcher's fetched partitions, each one's records handed out as parsed."""

    def __setitem__(self, tp: Any, result: Any) -> None:
        records = getattr(result, "_partition_records", None)
        if records is not None and hasattr(records, "_consumer_record"):
            # this runs in aiokafka's fetch task: an error here would stop every fetch
            with suppress(AttributeError):  # then ConsumerRecords, as before
                records._consumer_record = _as_parsed  # looked up on the instance first
        super().__setitem__(tp, result)


def _as_parsed(tp: Any, record: Any) -> Any:
    return record


def any_key_from(db: Any, prefix: bytes) -> bool:
    """Whether the RocksDB `db` has a key that starts with `prefix`."""
    iterator = db.iter()
    iterator.seek(prefix)
    return bool(iterator.valid() and bytes(iterator.key()).startswith(prefix))


def _epoch(headers: Any) -> bytes | None:
    for name, value in headers or ():
        if name == EPOCH_HEADER:
            return bytes(value)
    return None


def bootstrap_servers(app: Any) -> list[str]:
    """host:port of each broker, an IPv6 host in brackets again (yarl drops them, and aiokafka
    read `fd00::5:9093` as a host on port 9092: helper-85), as faust's own clients get them."""
    return [
        f"[{url.host}]:{url.port or 9092}" if ":" in url.host else f"{url.host}:{url.port or 9092}"
        for url in app.conf.broker
    ]


def kafka_security(app: Any) -> dict[str, Any]:
    """The app's own security settings (broker_credentials) as aiokafka arguments."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    return dict(credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context))
