"""The worker's backends of a batch: RocksDB (faust's table stores) and Kafka (aiokafka).

`RocksState` is the LocalState of streams/stages/store.py over the RocksDB partition databases
faust opens for its tables; `KafkaLog` is the Log, over the app's own aiokafka producer. The
stages never see either: they write through `DurableBatch` (streams/stages/batch.py), which
orders a flush: outputs, then changelogs, then RocksDB.

This module and streams/worker/recovery.py are the only code that touches faust's private pieces
(`table.data._db_for_partition`, `_dbs`, the changelog-offset key); faust-streaming is pinned.
Keys are raw bytes; values are JSON (what faust's json serializer reads back).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from typing import Any

import rocksdict
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    ProducerClosed,
    RecordTooLargeError,
)
from aiokafka.partitioner import DefaultPartitioner
from faust.types import CollectionT

from streams.config.settings import Settings
from streams.stages import keys
from streams.stages.store import (
    NO_EPOCH,
    BatchCaps,
    Epoch,
    Fenced,
    Headers,
    LogRecord,
    Pair,
    RecordTooLarge,
    epoch_header,
    marked_offsets,
    parse_epoch,
)
from streams.stages.store import TopicPartition as TP
from streams.worker import faults

log = logging.getLogger(__name__)

OFFSET_KEY = b"__faust\x00offset__"  # faust's RocksDB store keeps the changelog offset here
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
# the bytes a record takes in a batch beyond its key, value and headers (varints, attributes)
RECORD_OVERHEAD = 24


# what RocksDB holds in memory, by kind: the property of each that RocksDB reports
ROCKSDB_MEMORY = {
    "memtables": "rocksdb.cur-size-all-mem-tables",
    "table_readers": "rocksdb.estimate-table-readers-mem",  # what of them is outside the cache
}
SHARED = "all"  # the table named for the block cache, which every table's DBs share


class PartitionNotHeld(LookupError):
    """A read outside the stages of a partition this worker no longer holds (HeldReads)."""


class RocksState:
    """The tables of the partitions this worker owns, in faust's RocksDB databases."""

    def __init__(self, tables: Mapping[str, CollectionT]) -> None:
        self.tables = dict(tables)

    def memory(self) -> dict[tuple[str, str], int]:
        """Bytes RocksDB holds in memory for each table, by kind (ROCKSDB_MEMORY), summed
        over the partitions this worker has open; and the block caches', as table `SHARED`:
        every table's store holds the process's one cache (streams/worker/tables.py), each
        counted once, with the blocks of DBs closed since that it still holds."""
        out = {(table, kind): 0 for table in self.tables for kind in ROCKSDB_MEMORY}
        caches: dict[int, Any] = {}
        for table, collection in self.tables.items():
            options = getattr(collection.data, "rocksdb_options", None)  # type: ignore[attr-defined]
            cache = getattr(options, "block_cache", None)
            if cache is not None:
                caches[id(cache)] = cache
            for db in list(collection.data._dbs.values()):  # type: ignore[attr-defined]
                for kind, name in ROCKSDB_MEMORY.items():
                    out[(table, kind)] += db.property_int_value(name) or 0
        out[(SHARED, "block_cache")] = sum(cache.get_usage() for cache in caches.values())
        return out

    def owns(self, table: str, partition: int) -> bool:
        return partition in self.tables[table].data._dbs  # type: ignore[attr-defined]

    def held_reads(self) -> HeldReads:
        """Reads for the reports, which run beside the stages and across rebalances."""
        return HeldReads(self)

    def db(self, table: str, partition: int) -> Any:
        """The rocksdict DB of one table partition (faust opens it on assignment)."""
        return self.tables[table].data._db_for_partition(partition)  # type: ignore[attr-defined]

    def get_many(self, table: str, partition: int, keys_: Sequence[bytes]) -> list[bytes | None]:
        return list(self.db(table, partition).get(list(keys_)))

    def scan(
        self, table: str, partition: int, prefix: bytes, after: bytes | None, limit: int | None
    ) -> list[tuple[bytes, bytes]]:
        """Rows with `prefix` after `after`, in key order; no iterator outlives the call (none
        is ever held across an `await`)."""
        rows: list[tuple[bytes, bytes]] = []
        iterator = self.db(table, partition).items(from_key=after if after is not None else prefix)
        try:
            for key, value in iterator:
                if not key.startswith(prefix):
                    break
                if key == after or value is None:
                    continue
                rows.append((key, value))
                if limit is not None and len(rows) >= limit:
                    break
        finally:
            del iterator
        return rows

    def apply(
        self,
        table: str,
        partition: int,
        writes: Mapping[bytes, bytes | None],
        offset: int,
        fence: Epoch,
    ) -> None:
        if not self.owns(table, partition):
            # Revoked while the records were on their way: the new owner restores them from the
            # changelog; writing here would reopen a DB this worker no longer owns.
            log.info("%s partition %d was revoked; its changelog has the writes", table, partition)
            return
        db = self.db(table, partition)
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in writes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        # the offset and the fence only grow (as in the in-memory state): a restore reads on
        # from the offset, and one that went back would apply older records over newer rows
        stored = db.get([OFFSET_KEY, keys.FENCE])
        if stored[0] is None or int(stored[0]) < offset:
            batch.put(OFFSET_KEY, str(offset).encode())
        if stored[1] is None or parse_epoch(stored[1]) < fence:
            batch.put(keys.FENCE, epoch_header(fence)[0][1])
        db.write(batch)
        if table == keys.ATTEMPTS:
            faults.reached("after-rocksdb", "deletion" if None in writes.values() else "")

    def restored_offset(self, table: str, partition: int) -> int:
        raw = self.db(table, partition).get(OFFSET_KEY)
        return int(raw) if raw else -1

    def repairs(self, table: str, partition: int) -> dict[bytes, list[int]]:
        """Keys marked for the owner to write again, with the offsets of the deposed owner's
        records of them (see streams/worker/recovery.py and streams/stages/batch.py)."""
        marks = self.scan(table, partition, keys.REPAIR, None, None)
        return {mark[len(keys.REPAIR) :]: marked_offsets(value) for mark, value in marks}

    def forget_repairs(self, table: str, partition: int, keys_: Sequence[bytes]) -> None:
        """Drop the marks of keys whose repair reached the changelog (not on a partition
        revoked meanwhile: that would reopen a DB this worker no longer owns; the marks stay
        and the next takeover here writes those keys again, which is harmless)."""
        if not keys_ or not self.owns(table, partition):
            return
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key in keys_:
            batch.delete(keys.REPAIR + key)
        self.db(table, partition).write(batch)

    def fence(self, table: str, partition: int) -> Epoch:
        raw = self.db(table, partition).get(keys.FENCE)
        return parse_epoch(raw) if raw else NO_EPOCH


class HeldReads:
    """Reads of the partitions this worker holds at the moment of each read, for the reports.

    faust's `_db_for_partition` opens a partition's DB again when it is not open, and keeps it
    among the open ones: a report chunk read just after a rebalance took the partition away
    would give it back to this worker for good (`owns` true, the reports answering from a
    frozen copy instead of asking the holder; helper-60's review). Each read checks first, with
    no await in between, and a partition no longer held is `PartitionNotHeld`."""

    def __init__(self, state: RocksState) -> None:
        self.state = state

    def _check(self, table: str, partition: int) -> None:
        if not self.state.owns(table, partition):
            raise PartitionNotHeld(f"learner partition {partition} moved to another worker")

    def get_many(self, table: str, partition: int, keys_: Sequence[bytes]) -> list[bytes | None]:
        self._check(table, partition)
        return self.state.get_many(table, partition, keys_)

    def scan(
        self, table: str, partition: int, prefix: bytes, after: bytes | None, limit: int | None
    ) -> list[tuple[bytes, bytes]]:
        self._check(table, partition)
        return self.state.scan(table, partition, prefix, after, limit)


def _crash_label(groups: Any) -> str:
    """ "deletion" for a flush that writes attempt tombstones (a physical deletion's chunk)."""
    return "deletion" if any(value is None for rows in groups for _, value in rows) else ""


class KafkaLog:
    """Kafka as a flush needs it, through the app's aiokafka producer.

    Topics are logical names; `topic_name` adds TOPIC_PREFIX. A send is retried until Kafka
    acknowledged it (a retried group may land twice: the stages' records are absolute and the
    lineage check knows this owner's own epoch); a record Kafka refuses for its size is
    `RecordTooLarge` at once; when the consumer group's generation changes while a send waits,
    the worker may have been deposed, so it stops with `Fenced`. So it does when a revocation
    begins while a send that began outside one is retried (`revoking`): faust's revocation waits
    for every event handed out, and the generation changes only after it, so a send refused
    for longer would hold the whole group's rebalance. (A send that began while faust's flow
    control was already off, a timer's, keeps its retries: the revocation does not wait for it;
    the agents apply no group that starts during a revocation, streams/worker/agents/loop.py.)
    """

    def __init__(
        self,
        settings: Settings,
        producer: Callable[[], Any],
        generation: Callable[[], int] | None = None,
        revoking: Callable[[], bool] | None = None,
    ) -> None:
        self._settings = settings
        self._producer = producer  # called late: the producer starts with the app
        self._generation = generation
        self._revoking = revoking
        self._partitions: dict[str, list[int]] = {}
        self._partitioner = DefaultPartitioner()
        self._reader: AIOKafkaConsumer | None = None
        self._reader_lock = asyncio.Lock()
        self._caps = BatchCaps()  # what each topic's producer batches may take (its refusals)

    def topic_name(self, topic: str) -> str:
        return self._settings.topic(topic)

    async def partition_of(self, topic: str, key: bytes | None) -> int:
        """The partition the Kafka clients' default partitioner picks (murmur2 of the key)."""
        name = self.topic_name(topic)
        known = self._partitions.get(name)
        if known is None:
            known = self._partitions[name] = sorted(await self._producer().partitions_for(name))
        return int(self._partitioner(key, known, known))

    async def send(
        self,
        groups: Mapping[TP, Sequence[Pair]],
        headers: Mapping[TP, Headers] | None = None,
    ) -> dict[TP, tuple[int, int]]:
        acked: dict[TP, tuple[int, int]] = {}
        pending = dict(groups)
        extra = headers or {}
        generation = self._generation() if self._generation else None
        revoking_at_start = self._revoking is not None and self._revoking()
        delay = RETRY_FIRST_S
        # the crash tests' points (streams/worker/faults.py): flushes that write attempt records
        attempts_flush = any(tp[0] == "attempts" for tp in groups)
        label = ""
        if attempts_flush:
            label = _crash_label(rows for (t, _), rows in groups.items() if t == "attempts")
            faults.reached("before-changelog", label)
        while pending:
            failed: dict[TP, Sequence[Pair]] = {}
            built = {tp: self._batches(tp, rows, extra.get(tp, ())) for tp, rows in pending.items()}
            sent, errors = await self._send_in_order(built)
            waits = False  # (a group whose batches are only cut smaller goes again at once)
            for tp, exc in errors.items():
                # aiokafka raises some failures from `send_batch` itself rather than through
                # the batch's future: KafkaTimeoutError when the partition's previous batch
                # did not drain within the producer's request timeout, and
                # UnknownTopicOrPartition / TopicAuthorizationFailed while the topic is not in
                # its metadata. They are as transient as a failed future: the group is sent
                # again (the batches before it landed: absolute records).
                self._failed_send(tp, pending[tp], exc, delay)
                failed[tp] = pending[tp]
                waits = True
            for tp, batches in sent.items():
                if tp in failed:
                    continue
                results = [result for result, _, _ in batches]
                refusal = [r for r in results if isinstance(r, BaseException)]
                if refusal:
                    too_large = [
                        (records, batch.size())
                        for result, records, batch in batches
                        if isinstance(result, MessageSizeTooLargeError | RecordTooLargeError)
                    ]
                    failed[tp] = pending[tp]
                    if too_large:
                        self._cut_smaller(tp, too_large)
                        continue
                    self._failed_send(tp, pending[tp], refusal[0], delay)
                    waits = True
                    continue
                # a batch's future reports the offset of its first record; a record of another
                # writer between two batches of the group (a deposed owner's) would lie inside
                # (first, last), where the lineage never reads: `first` is then the first batch
                # after the last gap (the lineage reads from where it stood to there, skipping
                # this owner's own records)
                first: int = results[0].offset
                for (before, records, _), (after, _, _) in pairwise(batches):
                    if after.offset != before.offset + records:
                        first = after.offset
                last: Any = results[-1]
                acked[tp] = (first, last.offset + batches[-1][1] - 1)
            pending = failed
            if pending and waits:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                if generation is not None and self._generation and self._generation() != generation:
                    raise Fenced("the consumer group rebalanced while a flush waited for Kafka")
                if self._revoking is not None and not revoking_at_start and self._revoking():
                    raise Fenced("partitions are being revoked while a flush waited for Kafka")
        if attempts_flush:
            faults.reached("after-changelog", label)
        return acked

    def _cut_smaller(self, tp: TP, refused: Sequence[tuple[int, int]]) -> None:
        """Kafka refused producer batches of `tp` ((records, bytes) each) for their size: a
        topic whose `max.message.bytes` is below what the producer packs. Its batches are cut
        smaller and the group goes again; a record refused alone is `RecordTooLarge`."""
        for records, size in refused:
            if not self._caps.refused(tp[0], size, records):
                raise RecordTooLarge(f"Kafka refused a record of {tp[0]} for its size")
        log.warning(
            "Kafka refused a producer batch of %d records (%d bytes) to %s for its size; its "
            "batches are cut to %d bytes from now on (check the topic's max.message.bytes)",
            refused[0][0],
            refused[0][1],
            tp[0],
            self._caps.cap(tp[0]),
        )

    @staticmethod
    def _failed_send(tp: TP, rows: Sequence[Pair], error: BaseException, delay: float) -> None:
        log.warning(
            "sending %d records to %s/%d failed (%s); retrying in %.1fs",
            len(rows),
            tp[0],
            tp[1],
            type(error).__name__,
            delay,
        )

    async def _send_in_order(
        self, built: Mapping[TP, Sequence[tuple[Any, int]]]
    ) -> tuple[dict[TP, list[tuple[Any, int, Any]]], dict[TP, BaseException]]:
        """Send every partition's batches, a partition's next batch only once Kafka acknowledged
        the one before: a batch that fails (refused for its size, timed out) leaves the batches
        after it unsent, so what lands of a group is always a start of it, as the stages'
        changelogs assume of a flush that never completed (the tenant stage ranks its records
        within one). aiokafka's producer, given them all at once, goes on with a partition's
        later batches after a failed one; a process that died before the group went again left
        its end without its middle. The partitions go side by side, and a group of one batch,
        nearly every one, costs no round trip more.

        (result or exception, records, batch) per batch sent, and the partitions whose
        `send_batch` itself raised, with the error."""
        producer = self._producer()
        sent: dict[TP, list[tuple[Any, int, Any]]] = {tp: [] for tp in built}
        errors: dict[TP, BaseException] = {}
        going = [tp for tp in built if built[tp]]
        while going:
            queued: list[tuple[TP, Any, int, Any]] = []
            for tp in going:
                batch, records = built[tp][len(sent[tp])]
                # closed, the batch goes with the producer's next request: aiokafka lets an open
                # one linger (`producer_linger_ms`, 5 ms) for records a `send` might add, which
                # no one adds to ours, and every flush waited it out (5.5 ms a send, 0.4 closed)
                batch.close()
                try:
                    future = await producer.send_batch(
                        batch, self.topic_name(tp[0]), partition=tp[1]
                    )
                except (MessageSizeTooLargeError, RecordTooLargeError) as exc:
                    raise RecordTooLarge(f"Kafka refused a record of {tp[0]} for its size") from exc
                except ProducerClosed:
                    raise  # the worker is stopping: nothing to wait for
                except KafkaError as exc:
                    errors[tp] = exc
                    continue
                queued.append((tp, future, records, batch))
            results = await asyncio.gather(*(f for _, f, _, _ in queued), return_exceptions=True)
            going = []
            for (tp, _, records, batch), result in zip(queued, results, strict=True):
                sent[tp].append((result, records, batch))
                if not isinstance(result, BaseException) and len(sent[tp]) < len(built[tp]):
                    going.append(tp)
        return sent, errors

    def _batches(self, tp: TP, rows: Sequence[Pair], headers: Headers) -> list[tuple[Any, int]]:
        """A group cut into producer batches, each below the topic's cap (`BatchCaps`):
        (batch, records in it) each."""
        producer = self._producer()
        name = self.topic_name(tp[0])
        batches: list[tuple[Any, int]] = []
        batch, in_batch = producer.create_batch(), 0
        shared = list(headers)  # every record of the group carries the same (epoch) headers
        extra = RECORD_OVERHEAD + sum(len(header) + len(value) for header, value in shared)
        # (None on the hot path: no size check of our own until Kafka refused a batch)
        cap = self._caps.learned(tp[0])
        for key, value in rows:
            if (
                cap is not None
                and self._caps.full(
                    tp[0], batch.size(), in_batch, len(key or b"") + len(value or b"") + extra
                )
            ) or batch.append(key=key, value=value, timestamp=None, headers=shared) is None:
                if in_batch == 0:
                    raise RecordTooLarge(f"a record for {name} does not fit in a producer batch")
                batches.append((batch, in_batch))
                batch, in_batch = producer.create_batch(), 0
                if batch.append(key=key, value=value, timestamp=None, headers=shared) is None:
                    raise RecordTooLarge(f"a record for {name} does not fit in a producer batch")
            in_batch += 1
        batches.append((batch, in_batch))
        return batches

    async def _consumer(self) -> AIOKafkaConsumer:
        if self._reader is None:
            reader = AIOKafkaConsumer(
                **self._settings.aiokafka(),
                group_id=None,
                enable_auto_commit=False,
                max_partition_fetch_bytes=2 * 1024 * 1024,
                # A read that starts below the partition's first offset (records deleted by
                # retention or DeleteRecords) goes on from the first one left; aiokafka's default,
                # "latest", would jump to the end and skip every record of the range that is there.
                auto_offset_reset="earliest",
            )
            await reader.start()
            self._reader = reader
        return self._reader

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[LogRecord]:
        """The records at offsets [start, end) of a partition (a deposed owner's, usually)."""
        tp = TopicPartition(self.topic_name(topic), partition)
        out: list[LogRecord] = []
        async with self._reader_lock:
            consumer = await self._consumer()
            consumer.assign([tp])
            try:
                consumer.seek(tp, start)
                await self._read_range(consumer, tp, end, out)
            finally:
                # left to fetch, the consumer would poll the partition on and on between reads
                # (a long poll against the broker every half second), and a fetch in flight on
                # an idle partition could hold its `stop` at shutdown for good (the next read's
                # `assign` starts the next partition unpaused); also when the read failed or
                # was cancelled (a timer's lineage check at shutdown)
                consumer.pause(tp)
        return out

    @staticmethod
    async def _read_range(
        consumer: Any, tp: TopicPartition, end: int, out: list[LogRecord]
    ) -> None:
        while await consumer.position(tp) < end:
            fetched = await consumer.getmany(tp, timeout_ms=5_000, max_records=1_000)
            records = fetched.get(tp, [])
            if not records and await consumer.position(tp) < end:
                # compaction may leave gaps: what is gone cannot be a problem any more
                highwater = consumer.highwater(tp)
                if highwater is not None and highwater <= await consumer.position(tp):
                    break
                continue
            for record in records:
                if record.offset >= end:
                    break
                out.append(
                    LogRecord(
                        record.key,
                        record.value,
                        tuple(record.headers or ()),
                        record.offset,
                        record.timestamp,
                    )
                )

    async def start_offset(self, topic: str, partition: int) -> int:
        """The partition's first offset left (retention, the purge and DeleteRecords move it)."""
        return await self._offset(topic, partition, "beginning_offsets")

    async def end_offset(self, topic: str, partition: int) -> int:
        return await self._offset(topic, partition, "end_offsets")

    async def _offset(self, topic: str, partition: int, ask: str) -> int:
        tp = TopicPartition(self.topic_name(topic), partition)
        async with self._reader_lock:
            consumer = await self._consumer()
            offsets = await getattr(consumer, ask)([tp])
        return int(offsets[tp])

    async def stop(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None
