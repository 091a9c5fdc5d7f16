"""Durable state: table writes and output records, acknowledged by Kafka before an input is done.

Every stage changes its RocksDB tables and sends its records through a `StateBatch`:

    batch.put(table, partition, key, value)    # seen by batch.get() at once
    batch.delete(table, partition, key)
    batch.emit(topic, key, value, partition)    # an output or a command to the next stage
    batch.on_durable(callback)                  # runs once all of the above is durable
    await batch.flush()

`flush()` does three things, in this order:
  1. sends every changelog record and every output in bulk (one producer batch per topic
     partition) and waits until Kafka acknowledged all of them, retrying what failed;
  2. writes RocksDB: one WriteBatch per table partition, holding the changelog offset too;
  3. runs the `on_durable` callbacks (in-memory counters that may only report durable state).
The stages acknowledge their input events only after `flush()` returned, so an input offset is
never committed before everything it caused is in Kafka ("durable before done").

Why changelog first: RocksDB then never holds a write that Kafka lacks. A worker that dies after
step 1 finds the missing writes in the changelog when it restores (faust reads every changelog
record after the offset stored in RocksDB); one that dies during step 1 replays the input, and
every transition is idempotent. faust's own table writes queue their changelog records in a
buffer that an offset commit does not reliably drain (`ProducerBuffer.flush` gives up after
0.1 s without progress), which is how a broker restart could commit inputs whose state was lost.

Keys are raw bytes; values are JSON (what faust's json serializer reads back).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson
import rocksdict
from aiokafka.partitioner import DefaultPartitioner
from faust.types import CollectionT

from streams import faults

log = logging.getLogger(__name__)

OFFSET_KEY = b"__faust\x00offset__"  # faust's RocksDB store keeps the changelog offset here
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0


Record = tuple[bytes | None, bytes | None]  # key, value
TopicPartitionKey = tuple[str, int]


def encode(value: Any) -> bytes:
    return orjson.dumps(value)


def decode(raw: bytes | None) -> Any:
    return None if raw is None else orjson.loads(raw)


class Sender:
    """Sends records in bulk through the app's aiokafka producer and waits for every ack."""

    def __init__(self, producer: Callable[[], Any]) -> None:
        self._producer = producer  # called late: the producer starts with the app
        self._partitions: dict[str, list[int]] = {}
        self._partitioner = DefaultPartitioner()

    async def partitions_of(self, topic: str) -> list[int]:
        known = self._partitions.get(topic)
        if known is None:
            known = self._partitions[topic] = sorted(await self._producer().partitions_for(topic))
        return known

    async def partition_of(self, topic: str, key: bytes | None) -> int:
        """The partition the Kafka clients' default partitioner picks (murmur2 of the key)."""
        partitions = await self.partitions_of(topic)
        return int(self._partitioner(key, partitions, partitions))

    async def send_all(
        self, groups: dict[TopicPartitionKey, list[Record]]
    ) -> dict[TopicPartitionKey, int]:
        """Send; return the last offset written per topic partition. Retries until it succeeds.

        Records of one topic partition keep their order; a failed partition is sent again whole
        (duplicates are harmless: changelog values are absolute, outputs are idempotent).
        """
        last_offsets: dict[TopicPartitionKey, int] = {}
        pending = dict(groups)
        delay = RETRY_FIRST_S
        while pending:
            sent = {tp: await self._send_group(tp, rows) for tp, rows in pending.items()}
            failed: dict[TopicPartitionKey, list[Record]] = {}
            for tp, batches in sent.items():
                results = await asyncio.gather(*(f for f, _ in batches), return_exceptions=True)
                errors = [r for r in results if isinstance(r, BaseException)]
                if errors:
                    failed[tp] = pending[tp]
                    log.warning(
                        "sending %d records to %s/%d failed (%s); retrying in %.1fs",
                        len(pending[tp]),
                        tp[0],
                        tp[1],
                        type(errors[0]).__name__,
                        delay,
                    )
                    continue
                # a batch's future reports the offset of its first record
                last: Any = results[-1]
                last_offsets[tp] = last.offset + batches[-1][1] - 1
            pending = failed
            if pending:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        return last_offsets

    async def _send_group(self, tp: TopicPartitionKey, rows: list[Record]) -> list[tuple[Any, int]]:
        """Producer batches for one topic partition: (future, records in the batch) each."""
        producer = self._producer()
        sent: list[tuple[Any, int]] = []
        batch, in_batch = producer.create_batch(), 0
        for key, value in rows:
            if batch.append(key=key, value=value, timestamp=None) is None:
                if in_batch == 0:
                    raise ValueError(f"a record for {tp[0]} does not fit in a producer batch")
                sent.append((await producer.send_batch(batch, tp[0], partition=tp[1]), in_batch))
                batch, in_batch = producer.create_batch(), 0
                continue_with = batch.append(key=key, value=value, timestamp=None)
                if continue_with is None:
                    raise ValueError(f"a record for {tp[0]} does not fit in a producer batch")
            in_batch += 1
        sent.append((await producer.send_batch(batch, tp[0], partition=tp[1]), in_batch))
        return sent


_DELETED = object()


class StateBatch:
    """The table writes and output records of a group of input events (see the module doc)."""

    def __init__(self, sender: Sender) -> None:
        self._sender = sender
        self._tables: dict[str, CollectionT] = {}
        # (table, partition) -> {key: (encoded value or None, decoded value or _DELETED)}
        self._writes: dict[tuple[str, int], dict[bytes, tuple[bytes | None, Any]]] = defaultdict(
            dict
        )
        # (topic, partition or None for the default partitioner) -> records
        self._outputs: dict[tuple[str, int | None], list[Record]] = defaultdict(list)
        self._callbacks: list[Callable[[], None]] = []

    # -- reads: this batch's own writes first, then RocksDB ------------------------------------
    def get(self, table: CollectionT, partition: int, key: bytes) -> Any:
        written = self._writes.get((table.name, partition), {}).get(key)
        if written is not None:
            return None if written[1] is _DELETED else written[1]
        return decode(db_of(table, partition).get(key))

    def get_many(self, table: CollectionT, partition: int, keys: list[bytes]) -> list[Any]:
        """Values of `keys` (None where missing), read with one RocksDB multi-get."""
        if not keys:
            return []
        raw = db_of(table, partition).get(keys)
        values = [None if value is None else orjson.loads(value) for value in raw]
        written = self._writes.get((table.name, partition))
        if written:
            for index, key in enumerate(keys):
                mine = written.get(key)
                if mine is not None:
                    values[index] = None if mine[1] is _DELETED else mine[1]
        return values

    # -- writes --------------------------------------------------------------------------------
    def put(self, table: CollectionT, partition: int, key: bytes, value: Any) -> None:
        self._tables[table.name] = table
        self._writes[(table.name, partition)][key] = (encode(value), value)

    def delete(self, table: CollectionT, partition: int, key: bytes) -> None:
        self._tables[table.name] = table
        self._writes[(table.name, partition)][key] = (None, _DELETED)

    def emit(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        self._outputs[(topic, partition)].append((key, value))

    def on_durable(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def has_writes(self, table: CollectionT, partition: int) -> bool:
        return bool(self._writes.get((table.name, partition)))

    @property
    def pending(self) -> bool:
        return bool(self._writes or self._outputs or self._callbacks)

    def written_records(self) -> int:
        return sum(len(keys) for keys in self._writes.values())

    async def flush(self, label: str = "") -> None:
        """Make everything durable (see the module doc); the batch is empty afterwards.

        `label` names the kind of work for the crash tests (streams/faults.py).
        """
        if not self.pending:
            return
        writes, outputs, callbacks = self._writes, self._outputs, self._callbacks
        self._writes, self._outputs, self._callbacks = defaultdict(dict), defaultdict(list), []
        groups: dict[TopicPartitionKey, list[Record]] = defaultdict(list)
        for (topic, partition), rows in outputs.items():
            if partition is not None:
                groups[(topic, partition)].extend(rows)
                continue
            for key, value in rows:
                groups[(topic, await self._sender.partition_of(topic, key))].append((key, value))
        changelog_of: dict[TopicPartitionKey, tuple[str, int]] = {}
        for (name, partition), keys in writes.items():
            topic = self._tables[name].changelog_topic.get_topic_name()
            changelog_of[(topic, partition)] = (name, partition)
            groups[(topic, partition)].extend((k, v[0]) for k, v in keys.items())
        crash_test = any(name == "attempts" for name, _ in writes)
        if crash_test:
            faults.reached("before-changelog", label)
        last_offsets = await self._sender.send_all(groups)
        if crash_test:
            faults.reached("after-changelog", label)
        for tp, offset in last_offsets.items():
            target = changelog_of.get(tp)
            if target is not None:
                self._write_rocksdb(self._tables[target[0]], target[1], writes[target], offset)
        if crash_test:
            faults.reached("after-rocksdb", label)
        for callback in callbacks:
            callback()

    @staticmethod
    def _write_rocksdb(
        table: CollectionT, partition: int, keys: dict[bytes, tuple[bytes | None, Any]], offset: int
    ) -> None:
        if partition not in table.data._dbs:  # type: ignore[attr-defined]
            # Revoked while the records were on their way: the new owner restores them from the
            # changelog; writing here would reopen a DB this worker no longer owns.
            log.info(
                "%s partition %d was revoked; its changelog has the writes", table.name, partition
            )
            return
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, (encoded, _) in keys.items():
            if encoded is None:
                batch.delete(key)
            else:
                batch.put(key, encoded)
        batch.put(OFFSET_KEY, str(offset).encode())
        db_of(table, partition).write(batch)


def db_of(table: CollectionT, partition: int) -> Any:
    """The rocksdict DB of one table partition (faust opens it on assignment)."""
    return table.data._db_for_partition(partition)  # type: ignore[attr-defined]
