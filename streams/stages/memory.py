"""The in-memory backends of a batch: tables in dictionaries, Kafka as lists of records.

`MemoryState` is a process's local state folder (what RocksDB holds in the worker): per table
partition, the rows, the changelog offset they reach and the highest epoch applied. `MemoryLog`
is Kafka: partitioned logs with offsets, nothing lost, nothing reordered. Unit tests use them to
run the real stages without a broker; the simulator (streams/tools/simulate/) builds its Kafka
and its crashes on top of them.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from zlib import crc32

from streams.stages import keys
from streams.stages.batch import DurableBatch
from streams.stages.ownership import Ownership
from streams.stages.store import (
    NO_EPOCH,
    Epoch,
    Headers,
    LogRecord,
    OutputRepair,
    Pair,
    TopicPartition,
    marked_offsets,
)


@dataclass
class MemoryPartition:
    rows: dict[bytes, bytes] = field(default_factory=dict)
    offset: int = -1  # the last changelog offset these rows reach
    fence: Epoch = NO_EPOCH  # the highest epoch applied
    _sorted: list[bytes] | None = None

    def sorted_keys(self) -> list[bytes]:
        if self._sorted is None:
            self._sorted = sorted(self.rows)
        return self._sorted

    def write(self, writes: Mapping[bytes, bytes | None]) -> None:
        for key, value in writes.items():
            if value is None:
                self.rows.pop(key, None)
            else:
                self.rows[key] = value
        self._sorted = None


class MemoryState:
    """A local state folder in memory (the LocalState protocol)."""

    def __init__(self, owns: Callable[[str, int], bool] | None = None) -> None:
        self.partitions: dict[tuple[str, int], MemoryPartition] = {}
        self._owns = owns

    def held_reads(self) -> MemoryState:
        """(The reports' reads: nothing here opens a partition again, see RocksState's.)"""
        return self

    def partition(self, table: str, partition: int) -> MemoryPartition:
        found = self.partitions.get((table, partition))
        if found is None:
            found = self.partitions[(table, partition)] = MemoryPartition()
        return found

    def get_many(self, table: str, partition: int, keys: Sequence[bytes]) -> list[bytes | None]:
        rows = self.partitions.get((table, partition))
        if rows is None:
            return [None] * len(keys)
        return [rows.rows.get(key) for key in keys]

    def scan(
        self, table: str, partition: int, prefix: bytes, after: bytes | None, limit: int | None
    ) -> list[tuple[bytes, bytes]]:
        rows = self.partitions.get((table, partition))
        if rows is None:
            return []
        ordered = rows.sorted_keys()
        start = bisect_right(ordered, after) if after is not None else bisect_left(ordered, prefix)
        out: list[tuple[bytes, bytes]] = []
        for key in ordered[start:]:
            if not key.startswith(prefix):
                if key > prefix:
                    break
                continue
            out.append((key, rows.rows[key]))
            if limit is not None and len(out) >= limit:
                break
        return out

    def restored_offset(self, table: str, partition: int) -> int:
        rows = self.partitions.get((table, partition))
        return -1 if rows is None else rows.offset

    def fence(self, table: str, partition: int) -> Epoch:
        rows = self.partitions.get((table, partition))
        return NO_EPOCH if rows is None else rows.fence

    def repairs(self, table: str, partition: int) -> dict[bytes, list[int]]:
        marks = self.scan(table, partition, keys.REPAIR, None, None)
        return {mark[len(keys.REPAIR) :]: marked_offsets(value) for mark, value in marks}

    def forget_repairs(self, table: str, partition: int, keys_: Sequence[bytes]) -> None:
        if keys_ and (self._owns is None or self._owns(table, partition)):
            self.partition(table, partition).write({keys.REPAIR + key: None for key in keys_})

    def apply(
        self,
        table: str,
        partition: int,
        writes: Mapping[bytes, bytes | None],
        offset: int,
        fence: Epoch,
    ) -> None:
        if self._owns is not None and not self._owns(table, partition):
            return  # revoked meanwhile: the changelog has the rows
        rows = self.partition(table, partition)
        rows.write(writes)
        rows.offset = max(rows.offset, offset)
        rows.fence = max(rows.fence, fence)


CLEANED = LogRecord(None, None, (("cleaned", b""),))
"""What Kafka's log cleaner leaves of a record it removed from a compacted topic: a gap in the
offsets (the list keeps its place, so that an index stays an offset; readers skip it)."""


def present(records: Iterable[LogRecord]) -> list[LogRecord]:
    return [record for record in records if record is not CLEANED]


class MemoryLog:
    """Kafka in memory (the Log protocol): every send lands at once, in order."""

    def __init__(self, partitions: int, clock: Callable[[], int] = lambda: 0) -> None:
        self.default_partitions = partitions
        self.topics: dict[str, dict[int, list[LogRecord]]] = {}
        self.clock = clock

    def records(self, topic: str, partition: int) -> list[LogRecord]:
        return self.topics.setdefault(topic, {}).setdefault(partition, [])

    def all_records(self, topic: str) -> Iterable[tuple[int, LogRecord]]:
        for partition, records in sorted(self.topics.get(topic, {}).items()):
            for record in present(records):
                yield partition, record

    def append(
        self, topic: str, partition: int, pairs: Iterable[Pair], headers: Headers = ()
    ) -> tuple[int, int]:
        log = self.records(topic, partition)
        first = len(log)
        now = self.clock()
        for key, value in pairs:
            log.append(LogRecord(key, value, headers, len(log), now))
        return first, len(log) - 1

    async def partition_of(self, topic: str, key: bytes | None) -> int:
        return crc32(key or b"") % self.default_partitions

    async def send(
        self,
        groups: Mapping[TopicPartition, Sequence[Pair]],
        headers: Mapping[TopicPartition, Headers] | None = None,
    ) -> dict[TopicPartition, tuple[int, int]]:
        extra = headers or {}
        return {
            tp: self.append(tp[0], tp[1], pairs, extra.get(tp, ())) for tp, pairs in groups.items()
        }

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[LogRecord]:
        return present(self.records(topic, partition)[start:end])

    async def end_offset(self, topic: str, partition: int) -> int:
        return len(self.records(topic, partition))

    def latest(self, topic: str) -> dict[bytes, bytes]:
        """What a compacted topic holds: the last value per key (tombstones remove it)."""
        latest: dict[bytes, bytes] = {}
        for _, record in self.all_records(topic):
            if record.key is None:
                continue
            if record.value is None:
                latest.pop(record.key, None)
            else:
                latest[record.key] = record.value
        return latest

    def compact(
        self,
        topic: str,
        partition: int,
        end: int,
        now_ms: int,
        min_lag_ms: int,
        tombstone_ms: int,
    ) -> int:
        """What Kafka's log cleaner does to a partition of a compacted topic, over the offsets
        below `end` (where the active segment starts): a record with a later record of its key
        goes, and so does a tombstone older than `tombstone_ms` (`delete.retention.ms`); records
        younger than `min_lag_ms` (`min.compaction.lag.ms`) and everything after them stay.
        The number of records removed."""
        log = self.records(topic, partition)
        end = min(end, len(log))
        for offset in range(end):
            if log[offset] is not CLEANED and log[offset].timestamp_ms > now_ms - min_lag_ms:
                end = offset
                break
        last = {record.key: offset for offset, record in enumerate(log[:end])}
        removed = 0
        for offset in range(end):
            record = log[offset]
            if record is CLEANED or record.key is None:
                continue
            superseded = last[record.key] != offset
            expired = record.value is None and record.timestamp_ms < now_ms - tombstone_ms
            if superseded or expired:
                log[offset] = CLEANED
                removed += 1
        return removed


class MemoryStore:
    """A local state, a log and an ownership: everything a stage needs, in memory."""

    def __init__(self, partitions: int, clock: Callable[[], int] = lambda: 0) -> None:
        self.state = MemoryState()
        self.log = MemoryLog(partitions, clock)
        self.ownership = Ownership()

    def batch(self, repair_outputs: OutputRepair | None = None) -> DurableBatch:
        return DurableBatch(self.state, self.log, self.ownership, repair_outputs)

    def assume(self, stage: str, partitions: Iterable[int], epoch: Epoch = (1, 1)) -> None:
        """Own partitions without a takeover write (unit tests of a single handler)."""
        for partition in partitions:
            self.ownership.epochs[(stage, partition)] = epoch


async def never_deposed(generation: int) -> bool:
    """The group coordinator's answer for a process that is never deposed (unit tests): every
    takeover's generation is the group's current one."""
    return True
