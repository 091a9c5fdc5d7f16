"""The Store protocol: what a stage may do with state and output, and the backends under it.

A stage sees a `Batch` and nothing else:

    batch.get / get_many / scan       reads: this batch's own writes first, then the store
    batch.put / delete                table writes (JSON values), each in one table partition
    batch.emit                        an output record, or a command to the next stage
    batch.on_durable(callback)        runs once everything above is durable
    await batch.flush()               make everything durable now (streams/stages/batch.py)
    await batch.check_lineage(...)    find and repair a deposed owner's late writes

Under every batch sit two backends:

    LocalState   the tables of the partitions this process owns: RocksDB in the worker
                 (streams/worker/state.py), dictionaries in tests and in the simulator
    Log          Kafka, as a flush needs it: send groups of records and learn their offsets,
                 read a range back, ask for an end offset

so the same stage code runs in production, in unit tests and in the simulator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson

from schemas import topics
from streams.stages import keys

# Kafka's default max.message.bytes is 1,048,588 bytes for a whole record batch; a record the
# service writes stays below this (with room for the key, headers and batch overhead).
MAX_RECORD_BYTES = 1_000_000

T = TypeVar("T")


def chunks_by_size(items: Iterable[T], size_of: Callable[[T], int], limit: int) -> list[list[T]]:
    """`items` in order, cut into lists whose sizes add up to at most `limit` (an item larger
    than `limit` gets a list of its own); no list when there are no items. What keeps commands
    and stored pieces far below Kafka's record limit."""
    chunks: list[list[T]] = []
    size = 0
    for item in items:
        item_size = size_of(item)
        if not chunks or (chunks[-1] and size + item_size > limit):
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += item_size
    return chunks


# rows a `scan_all` reads at a time, unless its caller says (the simulator lowers it)
SCAN_ALL_CHUNK = 1_000


def scan_all(
    batch: Batch,
    table: str,
    partition: int,
    prefix: bytes,
    chunk: int | None = None,
    raw: bool = False,
) -> list[tuple[bytes, Any]]:
    """Every row of a table partition whose key starts with `prefix`, read `chunk` (or
    SCAN_ALL_CHUNK) at a time (`raw`: the values as stored, JSON bytes)."""
    chunk = chunk or SCAN_ALL_CHUNK
    scan = batch.scan_raw if raw else batch.scan
    rows: list[tuple[bytes, Any]] = []
    after = None
    while True:
        found = scan(table, partition, prefix, after, chunk)
        rows.extend(found)
        if len(found) < chunk:
            return rows
        after = found[-1][0]


def json_size(item: Any) -> int:
    """An item's bytes in a JSON list (with its comma)."""
    return len(orjson.dumps(item)) + 1


Epoch = tuple[int, int]
"""Who owns a stage partition: (takeover counter, consumer-group generation).

The counter is one more than the highest read from the partition's changelogs at the takeover;
the generation breaks the tie when two owners read the same counter (a deposed owner's takeover
write landed after its successor restored). Epochs compare as tuples. That order is right
because a takeover writes its epoch only once the group coordinator confirmed its generation
after everything it read (`StillMember`): an owner of a later generation reads after that, so it
reads at least as high a counter."""

StillMember = Callable[[int], Awaitable[bool]]
"""Asked by a takeover after it has read its partitions' epochs: is this process still a member
of the consumer group's `generation`? (The worker asks the group coordinator with a heartbeat,
streams/worker/membership.py; the simulator its own group.) No means it was deposed: it must
not write an epoch, which could outrank its successor's."""

NO_EPOCH: Epoch = (0, 0)
EPOCH_HEADER = "e"

TopicPartition = tuple[str, int]  # logical topic name (no TOPIC_PREFIX), partition
Pair = tuple[bytes | None, bytes | None]  # a record to send: key, value
Headers = tuple[tuple[str, bytes], ...]


# what the worker's producer packs into one batch at most (`producer_max_batch_size`)
PRODUCER_BATCH_BYTES = 1024 * 1024


class BatchCaps:
    """How many bytes a producer batch to each topic may take, learned from Kafka's refusals.

    A topic's `max.message.bytes` bounds a whole producer batch, not a record: a broker whose
    limit is below the producer's 1 MiB refuses a batch of many small records that each pass
    it. Such a refusal is no record's fault, so the `Log` cuts that topic's batches to half the
    refused batch and sends the group again, as often as it takes (a retried group may land
    twice, as after any failed send); only a batch of one record that Kafka refuses is
    `RecordTooLarge`. The caps live as long as the process: a worker learns each once.
    """

    def __init__(self, largest: int = PRODUCER_BATCH_BYTES) -> None:
        self.largest = largest
        self._caps: dict[str, int] = {}

    def cap(self, topic: str) -> int:
        return self._caps.get(topic, self.largest)

    def learned(self, topic: str) -> int | None:
        """The topic's cap once Kafka refused one of its batches (None: the producer's own)."""
        return self._caps.get(topic)

    def full(self, topic: str, batch_bytes: int, records: int, record_bytes: int) -> bool:
        """Whether a batch of `records` taking `batch_bytes` must go before one more record
        of `record_bytes` (never an empty one: a record always has a batch)."""
        return records > 0 and batch_bytes + record_bytes > self.cap(topic)

    def cut(self, topic: str, sizes: Sequence[int]) -> list[tuple[int, int, int]]:
        """(first index, records, bytes) of each batch the records of `sizes` make, in order."""
        batches: list[tuple[int, int, int]] = []
        first, records, taken = 0, 0, 0
        for index, size in enumerate(sizes):
            if self.full(topic, taken, records, size):
                batches.append((first, records, taken))
                first, records, taken = index, 0, 0
            records += 1
            taken += size
        if records:
            batches.append((first, records, taken))
        return batches

    def refused(self, topic: str, batch_bytes: int, records: int) -> bool:
        """Kafka refused a batch of `records` taking `batch_bytes` for its size: True when the
        topic's batches are cut smaller now (send again), False when it was one record alone
        (that record is too large for the topic)."""
        if records <= 1:
            return False
        # half the refused batch, not half the cap again: one pass may refuse a batch of each
        # of many partitions of the topic, each about the cap's size (helper-113: halved once
        # per partition, 12 refusals left a cap of 233 bytes, a flush of 3,000 records 17.8 s
        # on a real broker). A refused batch is at most the cap and one record, so each pass
        # still halves it, down to one record a batch.
        self._caps[topic] = min(self.cap(topic), batch_bytes // 2)
        return True


@dataclass(frozen=True, slots=True)
class LogRecord:
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    offset: int = -1
    timestamp_ms: int = 0

    @property
    def epoch(self) -> Epoch:
        """The writer's epoch, from the record's header ((0, 0) when it has none)."""
        for name, value in self.headers:
            if name == EPOCH_HEADER:
                return parse_epoch(value)
        return NO_EPOCH


@dataclass(frozen=True, slots=True)
class Record:
    """An input event of a stage: one record of one of its input topics."""

    key: bytes | None
    value: bytes | None
    topic: str  # the real name (with TOPIC_PREFIX)
    partition: int
    offset: int
    timestamp: int  # ms: the record's Kafka timestamp

    def position(self) -> str:
        return f"{self.topic}/{self.partition}@{self.offset}"


def mark_value(offsets: Iterable[int]) -> bytes:
    """A repair mark's value (`keys.REPAIR`): the changelog offsets of the deposed owner's
    records of its key, so that the owner can answer what they say, not only rewrite the key."""
    return ",".join(str(offset) for offset in sorted(set(offsets))).encode()


def marked_offsets(value: bytes | None) -> list[int]:
    """The offsets a repair mark names (none for a mark written by an older version: its key
    is written again, its records are not read back)."""
    if not value:
        return []
    return [int(part) for part in value.split(b",") if part.isdigit()]


def restore_rule(
    records: Iterable[LogRecord],
    fence: Epoch,
    stored_marks: Callable[[list[bytes]], list[bytes | None]],
) -> tuple[dict[bytes, bytes | None], Epoch]:
    """The writes a restore makes of changelog records, and the fence they reach: a record of
    an epoch lower than one applied before it is a deposed owner's, not applied; its key is
    marked (`keys.REPAIR`) with its offset, merged with the marks already stored
    (`stored_marks` reads them). streams/worker/recovery.py applies the same rule fetch by
    fetch, in a loop of its own for speed."""
    writes: dict[bytes, bytes | None] = {}
    skipped: dict[bytes, list[int]] = {}
    for record in records:
        if record.key is None:
            continue
        if record.epoch < fence:
            skipped.setdefault(record.key, []).append(record.offset)
            continue
        fence = record.epoch
        writes[record.key] = record.value
    if skipped:
        names = [keys.REPAIR + key for key in skipped]
        for name, offsets, stored in zip(names, skipped.values(), stored_marks(names), strict=True):
            writes[name] = mark_value([*offsets, *marked_offsets(stored)])
    return writes, fence


def starts_afresh(moved_on: bool, marked: bool) -> bool:
    """Whether a state folder's table partition is restored from the changelog's start rather
    than from its stored offset: when it holds repair marks and the changelog has records after
    that offset.

    A mark records this folder's view that some records are a deposed owner's: records that
    landed after its takeover read the end offsets, before its epoch record. A restore from the
    start sees no higher epoch before them and takes them (seed 9513857): if this owner died
    before answering them, the owners after it took them, replayed their command as a repeat
    and committed it. Back on this folder, the marks would then tombstone what everyone else
    holds. Restored from the start, the folder takes the view every other restore takes, and
    its marks are the ones that view makes. (With nothing after its offset, nobody has acted
    since: its marks are answered as they are.)"""
    return moved_on and marked


def epoch_header(epoch: Epoch) -> Headers:
    return ((EPOCH_HEADER, f"{epoch[0]}.{epoch[1]}".encode()),)


def parse_epoch(value: bytes) -> Epoch:
    counter, _, generation = value.partition(b".")
    try:
        return int(counter), int(generation or b"0")
    except ValueError:
        return NO_EPOCH


class Fenced(Exception):
    """This process was deposed: a newer owner wrote to a partition it writes, or the consumer
    group moved on (or began a revocation) while a flush waited for Kafka. Its events are not
    acknowledged: their new owner processes them again. Nothing of the batch is applied locally,
    except for the tenant stage, which writes its state before its outputs: those outputs are
    the takeover's to send (`TenantStage.take_over_outputs`), as after a crash between the two."""


class LocalWriteFailed(RuntimeError):
    """A flush failed once it had begun to write the local tables (a full or failing disk;
    anything after that: the tenant stage's outputs, the callbacks). Some tables of the batch
    may be written and others not, the stage's derived state (counters, tallies) was not told,
    and the tenant stage's outputs may not be sent: applying the batch again would not mend
    them (what is written reads as done). A takeover does (it rebuilds the counters and sends
    every output again), so the worker stops."""


class RecordTooLarge(ValueError):
    """A value or record the service would write exceeds MAX_RECORD_BYTES (a bug: the stages
    split what can grow). Raised when it is written, so the event that caused it fails whole."""


# -- where every table and fenced output lives ------------------------------------------------
LEARNER = "learner"
TENANT = "tenant"

TABLES: dict[str, tuple[str, str]] = {
    # table -> (stage, changelog topic). The order matters: a takeover reads the end offsets in
    # it, and `attempts` before `erasures` means a deposed owner's tombstones are never caught
    # up with while its markers (written a flush earlier) are repaired away as a zombie's.
    keys.ATTEMPTS: (LEARNER, topics.ATTEMPTS),
    keys.LEARNER_STATE: (LEARNER, topics.LEARNER_STATE_CHANGELOG),
    keys.LEARNER_GROUPS: (LEARNER, topics.LEARNER_GROUPS_CHANGELOG),
    keys.ERASURES: (LEARNER, topics.ERASURES_CHANGELOG),
    keys.TENANT_STATE: (TENANT, topics.TENANT_STATE_CHANGELOG),
}
CHANGELOG_TABLE = {changelog: table for table, (_, changelog) in TABLES.items()}

# Outputs that only the owner of a tenant partition writes, to the partition of the same number:
# like changelogs, a record there that the owner did not write is a deposed owner's.
FENCED_OUTPUTS = frozenset(
    {topics.ACTIVE_LEARNER_COUNTS, topics.THRESHOLD_EVENTS, topics.DELETION_RECEIPTS}
)


def stage_of_topic(topic: str) -> str | None:
    """The stage whose owner alone writes `topic` (changelogs, fenced outputs), else None."""
    table = CHANGELOG_TABLE.get(topic)
    if table is not None:
        return TABLES[table][0]
    return TENANT if topic in FENCED_OUTPUTS else None


def fenced_topics(stage: str) -> list[str]:
    changelogs = [changelog for _, (owner, changelog) in TABLES.items() if owner == stage]
    return changelogs + (sorted(FENCED_OUTPUTS) if stage == TENANT else [])


# -- the protocols ----------------------------------------------------------------------------
class Batch(Protocol):
    """What a stage handler reads and writes through (streams/stages/batch.py)."""

    def get(self, table: str, partition: int, key: bytes) -> Any: ...

    def get_many(
        self, table: str, partition: int, keys: Sequence[bytes], remember: bool = False
    ) -> list[Any]: ...

    def scan(
        self,
        table: str,
        partition: int,
        prefix: bytes,
        after: bytes | None = None,
        limit: int | None = None,
    ) -> list[tuple[bytes, Any]]: ...

    def scan_raw(
        self, table: str, partition: int, prefix: bytes, after: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        """`scan`, with the values as stored (JSON bytes): for reading many rows fast."""
        ...

    def put(self, table: str, partition: int, key: bytes, value: Any) -> None:
        """Write `value` under `key` in this batch. A batch's writes to a partition reach its
        changelog in the order of their first write, unless the table orders them otherwise
        (`keys.CHANGELOG_ORDER`)."""
        ...

    def put_same(self, table: str, partition: int, keys: Sequence[bytes], value: Any) -> None:
        """`put` of one value under many keys (encoded once)."""
        ...

    def put_many(self, table: str, partition: int, rows: Iterable[tuple[bytes, Any]]) -> None:
        """`put` of each (key, value) in order; all or nothing (a value too large for a record
        refuses the whole call)."""
        ...

    def delete(self, table: str, partition: int, key: bytes) -> None: ...

    def delete_many(self, table: str, partition: int, keys: Sequence[bytes]) -> None:
        """`delete` of many keys."""
        ...

    def emit(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None: ...

    def on_durable(self, callback: Callable[[], None]) -> None: ...

    def savepoint(self) -> tuple[int, int]: ...

    def wrote_since(self, mark: tuple[int, int]) -> bool:
        """Whether a write or an output came since `savepoint` gave `mark`."""
        ...

    def rollback(self, mark: tuple[int, int]) -> None:
        """Undo every write, output and callback since `savepoint` gave `mark`."""
        ...

    async def flush(self) -> None: ...

    def note_outputs_from(self, partition: int) -> None:
        """Write a tenant partition's `keys.OUTPUTS_FROM` with the next flush, even if it
        writes nothing else there: where a takeover's lineage of its outputs starts."""
        ...

    async def check_lineage(self, stage: str, partitions: Sequence[int]) -> None:
        """Repair what a deposed owner wrote to these partitions' changelogs since this owner's
        last write (see streams/stages/batch.py)."""
        ...


class Reads(Protocol):
    """What the reports read of a partition's local tables (a LocalState reads so)."""

    def get_many(self, table: str, partition: int, keys: Sequence[bytes]) -> list[bytes | None]: ...

    def scan(
        self, table: str, partition: int, prefix: bytes, after: bytes | None, limit: int | None
    ) -> list[tuple[bytes, bytes]]: ...


class LocalState(Protocol):
    """The local tables of the partitions this process owns (values are raw JSON bytes)."""

    def get_many(self, table: str, partition: int, keys: Sequence[bytes]) -> list[bytes | None]: ...

    def scan(
        self, table: str, partition: int, prefix: bytes, after: bytes | None, limit: int | None
    ) -> list[tuple[bytes, bytes]]:
        """Rows whose key starts with `prefix` and sorts after `after`, in key order."""
        ...

    def apply(
        self,
        table: str,
        partition: int,
        writes: Mapping[bytes, bytes | None],
        offset: int,
        fence: Epoch,
    ) -> None:
        """One atomic write: the rows, the changelog offset they reach, the epoch they carry.
        A partition this process no longer owns is left alone (its changelog has the rows)."""
        ...

    def restored_offset(self, table: str, partition: int) -> int:
        """The last changelog offset the local rows of a table partition reach (-1: none)."""
        ...

    def fence(self, table: str, partition: int) -> Epoch:
        """The highest epoch applied to a table partition ((0, 0): none)."""
        ...

    def repairs(self, table: str, partition: int) -> dict[bytes, list[int]]:
        """The keys marked for the owner to write again (`keys.REPAIR`: a restore skipped a
        deposed owner's record of them, or a flush found one and had not repaired it yet),
        each with the offsets of those records in the changelog."""
        ...

    def forget_repairs(self, table: str, partition: int, keys_: Sequence[bytes]) -> None:
        """Drop the marks of keys whose repair is durable."""
        ...


class Log(Protocol):
    """Kafka as a flush sees it (topics are logical names; the backend adds TOPIC_PREFIX)."""

    async def partition_of(self, topic: str, key: bytes | None) -> int:
        """The partition the Kafka clients' default partitioner gives `key`."""
        ...

    async def send(
        self,
        groups: Mapping[TopicPartition, Sequence[Pair]],
        headers: Mapping[TopicPartition, Headers] | None = None,
    ) -> dict[TopicPartition, tuple[int, int]]:
        """Append each group to its partition, in order (with that partition's headers on every
        record); the (first, last) offset of each group.

        Retries until Kafka acknowledged everything (a retry may append a group twice); raises
        `Fenced` when the consumer group moved on meanwhile."""
        ...

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[LogRecord]:
        """The records at offsets [start, end) that still exist."""
        ...

    async def end_offset(self, topic: str, partition: int) -> int: ...


OutputRepair = Callable[[Any, str, int, list[LogRecord]], Awaitable[None] | None]
"""A stage's answer to a deposed owner's records in one of its fenced outputs (write the
current truth of their keys again) or in its changelog, after their keys were written again
(answer what they say was sent; streams/stages/tenants.py)."""
