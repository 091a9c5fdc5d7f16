"""`DurableBatch`: the one implementation of the Batch protocol, over any LocalState and Log.

A group of input events is handled into one batch; `flush()` makes it durable in this order
(for a stage that sends its outputs first, the learner stage; the tenant stage writes its state
first and its outputs after step 4, see streams/stages/tenants.py):

  1. outputs and commands to the next stage are sent, and acknowledged by Kafka;
  2. the table writes are sent to their changelogs, tagged with the owner's epoch, and
     acknowledged;
  3. the lineage is checked: a record in a changelog (or fenced output) partition that this owner
     did not write is a deposed owner's. A newer epoch there means this process was deposed
     (`Fenced`: nothing is applied locally); an older one is a zombie write, repaired below;
  4. the local tables are written (one atomic write per table partition, with the changelog
     offset and the epoch reached, and a repair mark for each zombie key of step 3: the rows
     reach past those records now, and a crash before step 6 must not forget them);
  5. the `on_durable` callbacks run (in-memory counters describe durable state only);
  6. zombie keys are written again with their current value (and zombie outputs answered by the
     stage), which is another round of 1-5; the marks are dropped once it is durable.
The caller acknowledges its input events only after `flush()` returned.

Why outputs first: a crash after step 1 replays the events from the state before them, which
computes the same outputs again (stages decide from the records, never from the wall clock).
A crash during step 2 may leave any subset of the changelog partitions written; every stage
transition heals such a mixed state when its input is replayed, and the outputs are already out.
So nothing a flush was to send is ever lost to a replay, and no "done" marker can skip it.

Why the changelog before the local tables: local RocksDB then never holds a write Kafka lacks;
a partition restored elsewhere from its changelog has everything the old owner had.
"""

from __future__ import annotations

import functools
import logging
from bisect import bisect_left, bisect_right, insort
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import orjson

from streams.stages import keys, metrics
from streams.stages.ownership import Ownership
from streams.stages.store import (
    CHANGELOG_TABLE,
    FENCED_OUTPUTS,
    LEARNER,
    MAX_RECORD_BYTES,
    NO_EPOCH,
    TABLES,
    TENANT,
    Epoch,
    Fenced,
    Headers,
    LocalState,
    LocalWriteFailed,
    Log,
    LogRecord,
    OutputRepair,
    Pair,
    RecordTooLarge,
    StillMember,
    TopicPartition,
    epoch_header,
    fenced_topics,
    mark_value,
    marked_offsets,
    restore_rule,
    stage_of_topic,
)

log = logging.getLogger(__name__)

_DELETED = object()
# the largest record emitted to each topic by this process (`largest_record_bytes`): the bench
# reads it for the command topics, whose records the worker deletes once they are consumed
_largest: dict[str, int] = {}
_MISSING = object()

# how far a flush or check moved each partition's lineage: (expected before, after)
Moves = dict[TopicPartition, tuple[int | None, int]]
Pending = dict[bytes, tuple[bytes | None, Any]]  # key -> (encoded value or None, decoded value)
# a stage's recomputation of marked keys: (batch, table, partition, {marked key: the deposed
# owner's records of it still in the changelog, oldest first})
Heal = Callable[["DurableBatch", str, int, dict[bytes, list["LogRecord"]]], Awaitable[None]]


class DurableBatch:
    """The table writes and outputs of a group of input events (see the module doc)."""

    def __init__(
        self,
        state: LocalState,
        log_: Log,
        ownership: Ownership,
        repair_outputs: OutputRepair | None = None,
        outputs_first: bool = True,
    ) -> None:
        self._state = state
        self._log = log_
        self._own = ownership
        self._repair_outputs = repair_outputs
        self._outputs_first = outputs_first
        self._writes: dict[tuple[str, int], Pending] = {}
        # rows read from the store with `remember`, as stored (None: missing), until this
        # batch's next flush writes the store (see `get_many`)
        self._read: dict[tuple[str, int], dict[bytes, bytes | None]] = {}
        # the keys of `_writes` in order, per table partition, once a scan asked (kept up to
        # date from then on): a scan merges only the pending keys in its range, where
        # walking every pending key made a batch that scans per tenant quadratic
        self._sorted: dict[tuple[str, int], list[bytes]] = {}
        self._outputs: dict[tuple[str, int | None], list[Pair]] = {}
        self._callbacks: list[Callable[[], None]] = []
        self._undo: list[tuple[Any, ...]] = []
        self._flushes = 0
        # zombie records found and not repaired yet: marked in the local write that follows
        # (keys.REPAIR, with their offsets), dropped once the repair is durable
        self._marks: dict[tuple[str, int], dict[bytes, set[int]]] = {}
        self._marked: dict[tuple[str, int], set[bytes]] = {}
        # (fenced output partition, offset of the first) of deposed owners' records this batch
        # found: their answers go out in its flush (`Ownership.unanswered` until durable)
        self._answering: list[tuple[TopicPartition, int]] = []
        # what the last flush raised: a handler that flushes (a tick, a lineage check, a
        # deletion's chunks) and fails with it has lost the group's earlier events from the
        # batch (or written them in part), which is the group's failure, not the event's
        # (streams/stages/loop.py)
        self.flush_error: BaseException | None = None
        # a takeover's batch: whether a later rebalance has begun, and what it is (`stop_when`)
        self._superseded: Callable[[], bool] | None = None
        self._superseded_what = ""

    # -- reads: this batch's own writes first, then the local tables ---------------------------
    def get(self, table: str, partition: int, key: bytes) -> Any:
        mine = self._writes.get((table, partition))
        if mine is not None:
            written = mine.get(key)
            if written is not None:
                return None if written[1] is _DELETED else written[1]
        raw = self._state.get_many(table, partition, [key])[0]
        return None if raw is None else orjson.loads(raw)

    def get_many(
        self, table: str, partition: int, keys_: Sequence[bytes], remember: bool = False
    ) -> list[Any]:
        """Values of `keys_` (None where missing), read with one multi-get.

        With `remember`, rows read from the store are kept until this batch's next flush, and
        read from there again; and keys this batch wrote are not read from the store at all.
        The learner stage reads the same tenants' license entries and many of the same
        learners' memberships in every command of a group (a batch): 64 multi-gets of them
        became one (docs/benchmarks.md, "A group reads a row once"). Until the flush only this
        batch writes the rows it reads (a group is applied between two flushes of its own batch,
        a rebalance waits for it, and a takeover reads through a batch of its own); its own
        writes come first, as they do for every read; and its flush writes the store, so the
        rows kept go then."""
        if not keys_:
            return []
        if remember:
            return self._get_remembered(table, partition, keys_)
        raw = self._state.get_many(table, partition, keys_)
        values = [None if value is None else orjson.loads(value) for value in raw]
        mine = self._writes.get((table, partition))
        if mine:
            for index, key in enumerate(keys_):
                written = mine.get(key)
                if written is not None:
                    values[index] = None if written[1] is _DELETED else written[1]
        return values

    def _get_remembered(self, table: str, partition: int, keys_: Sequence[bytes]) -> list[Any]:
        where = (table, partition)
        mine = self._writes.get(where) or {}
        kept = self._read.setdefault(where, {})
        wanted = [key for key in keys_ if key not in kept and key not in mine]
        if wanted:
            kept.update(zip(wanted, self._state.get_many(table, partition, wanted), strict=True))
        values: list[Any] = []
        for key in keys_:
            written = mine.get(key)
            if written is not None:
                values.append(None if written[1] is _DELETED else written[1])
            else:
                raw = kept[key]
                # decoded at every read: a caller may change what it was given
                values.append(None if raw is None else orjson.loads(raw))
        return values

    def scan(
        self,
        table: str,
        partition: int,
        prefix: bytes,
        after: bytes | None = None,
        limit: int | None = None,
    ) -> list[tuple[bytes, Any]]:
        """Rows with `prefix` after key `after`, in key order, at most `limit`; they include
        this batch's own writes (and leave out what it deleted). Fewer than `limit` rows only
        when there are no more: callers take a short chunk for the end."""
        local = self._state.scan(table, partition, prefix, after, limit)
        mine = self._writes.get((table, partition))
        if not mine:
            return [(key, orjson.loads(raw)) for key, raw in local]
        rows: list[tuple[bytes, Any]] = []
        while True:
            # with a limit, the local rows end somewhere: pending keys past that wait for the
            # next chunk, so that resuming after the last row returned never skips one
            full = limit is not None and len(local) >= limit
            bound = local[-1][0] if full else None
            rows += _merged(
                mine, self._sorted_keys((table, partition)), local, prefix, after, bound
            )
            if limit is None or len(rows) >= limit or not full:
                return rows if limit is None else rows[:limit]
            # this batch deleted some of those local rows: read on, so that the chunk is full
            after = bound
            local = self._state.scan(table, partition, prefix, after, limit)

    def _sorted_keys(self, where: tuple[str, int]) -> list[bytes]:
        index = self._sorted.get(where)
        if index is None:
            index = self._sorted[where] = sorted(self._writes[where])
        return index

    # -- writes ---------------------------------------------------------------------------------
    def scan_raw(
        self, table: str, partition: int, prefix: bytes, after: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        if not self._writes.get((table, partition)):
            return self._state.scan(table, partition, prefix, after, limit)
        return [
            (key, orjson.dumps(value))
            for key, value in self.scan(table, partition, prefix, after, limit)
        ]

    def put(self, table: str, partition: int, key: bytes, value: Any) -> None:
        self._write(table, partition, key, (_encoded(table, key, value), value))

    def put_same(self, table: str, partition: int, keys_: Sequence[bytes], value: Any) -> None:
        """`put` of one value under many keys: every key's size is checked before any is
        written, so a refusal leaves nothing of the call behind."""
        keys_ = list(keys_)  # (read twice)
        encoded = bytes(memoryview(orjson.dumps(value)))
        room = MAX_RECORD_BYTES - len(encoded)
        for key in keys_:
            if len(key) > room:
                raise RecordTooLarge(f"{table} value under {key[:80]!r} exceeds the limit")
        self._write_all(table, partition, dict.fromkeys(keys_, (encoded, value)))

    def put_many(self, table: str, partition: int, rows: Iterable[tuple[bytes, Any]]) -> None:
        """`put` of many rows (the learner stage's attempts and memberships: a call per row was
        a twentieth of its time). Every row's size is checked before any is written; a key
        named twice keeps its last value, at the place of its first (as two `put`s would)."""
        written = {key: (_encoded(table, key, value), value) for key, value in rows}
        self._write_all(table, partition, written)

    def delete(self, table: str, partition: int, key: bytes) -> None:
        self._write(table, partition, key, (None, _DELETED))

    def delete_many(self, table: str, partition: int, keys_: Sequence[bytes]) -> None:
        self._write_all(table, partition, dict.fromkeys(keys_, (None, _DELETED)))

    def _pending(self, where: tuple[str, int]) -> Pending:
        pending = self._writes.get(where)
        if pending is None:
            if where[0] not in TABLES:
                raise KeyError(f"unknown table {where[0]!r}")
            pending = self._writes[where] = {}
        return pending

    def _write(self, table: str, partition: int, key: bytes, entry: tuple[Any, Any]) -> None:
        where = (table, partition)
        pending = self._writes.get(where)
        if pending is None:
            pending = self._pending(where)
        previous = pending.get(key, _MISSING)
        self._undo.append(("w", where, key, previous))
        if previous is _MISSING:
            index = self._sorted.get(where)
            if index is not None:
                insort(index, key)
        pending[key] = entry

    def _write_all(self, table: str, partition: int, written: dict[bytes, tuple[Any, Any]]) -> None:
        """`_write` of many entries (a deletion's markers and tombstones: a million keys, where
        a call per key was a tenth of the deletion's time). One undo entry holds the keys and
        what each replaced."""
        if not written:
            return
        where = (table, partition)
        pending = self._pending(where)
        unique = list(written)
        previous = [pending.get(key, _MISSING) for key in unique]
        self._undo.append(("m", where, unique, previous))
        index = self._sorted.get(where)
        if index is not None:
            for key, before in zip(unique, previous, strict=True):
                if before is _MISSING:
                    insort(index, key)
        pending.update(written)

    def emit(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        size = (len(key) if key else 0) + (len(value) if value else 0)
        if size > _largest.get(topic, 0):
            if size > MAX_RECORD_BYTES:
                raise RecordTooLarge(
                    f"a {topic} record of {size:,} bytes exceeds {MAX_RECORD_BYTES:,}"
                )
            _largest[topic] = size
            metrics.largest_record_bytes.labels(topic).set(size)
        if topic in FENCED_OUTPUTS and partition is None:
            raise ValueError(f"{topic} records are written to their tenant's partition")
        records = self._outputs.setdefault((topic, partition), [])
        self._undo.append(("o", (topic, partition), len(records)))
        records.append((key, value))

    def on_durable(self, callback: Callable[[], None]) -> None:
        self._undo.append(("c", len(self._callbacks)))
        self._callbacks.append(callback)

    # -- savepoints: a failed event leaves nothing behind ---------------------------------------
    def savepoint(self) -> tuple[int, int]:
        return self._flushes, len(self._undo)

    def wrote_since(self, mark: tuple[int, int]) -> bool:
        """Whether a write or an output came since `savepoint` gave `mark` (callbacks aside)."""
        flushes, length = mark
        return flushes != self._flushes or any(entry[0] != "c" for entry in self._undo[length:])

    def rollback(self, mark: tuple[int, int]) -> None:
        """Undo every write, output and callback since `mark` that is not durable yet."""
        flushes, length = mark
        keep = length if flushes == self._flushes else 0
        while len(self._undo) > keep:
            entry = self._undo.pop()
            if entry[0] == "w":
                _, where, key, previous = entry
                self._unwrite(where, key, previous)
            elif entry[0] == "m":
                _, where, keys_, previous_ = entry
                for key, previous in zip(reversed(keys_), reversed(previous_), strict=True):
                    self._unwrite(where, key, previous)
            elif entry[0] == "o":
                _, where, size = entry
                del self._outputs[where][size:]
                if not self._outputs[where]:
                    del self._outputs[where]
            else:
                del self._callbacks[entry[1] :]

    def _unwrite(self, where: tuple[str, int], key: bytes, previous: Any) -> None:
        if previous is _MISSING:
            del self._writes[where][key]
            index = self._sorted.get(where)
            if index is not None:
                del index[bisect_left(index, key)]
            if not self._writes[where]:
                del self._writes[where]
                self._sorted.pop(where, None)
        else:
            self._writes[where][key] = previous

    @property
    def pending(self) -> bool:
        return bool(self._writes or self._outputs or self._callbacks)

    def written_records(self) -> int:
        return sum(len(rows) for rows in self._writes.values())

    # -- a takeover's batch ----------------------------------------------------------------------
    def stop_when(self, superseded: Callable[[], bool], what: str) -> None:
        """Make this a takeover's batch: from the moment `superseded()` holds (a later
        rebalance has begun in this process), it sends nothing more to Kafka and writes nothing
        more into the local tables or the process's ownership (`check_current` raises `Fenced`).

        faust does not cancel an on_recover callback that a later rebalance interrupts
        (streams/worker/takeovers.py): without this, a stale takeover's flush that waited for
        Kafka meanwhile would write the partitions' local rows, and move their lineage, after
        the newer takeover of the same process restored and claimed them. Each check comes
        with no `await` between it and the write it guards."""
        self._superseded = superseded
        self._superseded_what = what

    def _overtaken(self) -> bool:
        """Whether this is a takeover's batch and a later rebalance has begun."""
        return self._superseded is not None and self._superseded()

    def check_current(self) -> None:
        """Raise `Fenced` if this is a takeover's batch and a later rebalance has begun."""
        if self._overtaken():
            raise Fenced(f"{self._superseded_what}: a later rebalance has begun; it stops here")

    # -- making it durable ----------------------------------------------------------------------
    async def flush(self) -> None:
        """Make everything durable (see the module doc); the batch is empty afterwards."""
        self.flush_error = None
        # the flush writes the store: rows kept from before it go, and so do any read while it
        # ran (a repair's round reads before the write that follows it)
        self._read.clear()
        try:
            await self._flush_rounds()
        except BaseException as exc:
            # the marks written stay on disk: the next takeover repairs their keys
            self._marks.clear()
            self._marked.clear()
            if self._overtaken():
                self._answering.clear()  # the process's ownership is a newer takeover's now
            else:
                self._reread_unanswered()
            self.flush_error = exc
            raise
        finally:
            self._read.clear()
        self.check_current()
        for (table, partition), marked in self._marked.items():
            self._state.forget_repairs(table, partition, sorted(marked))
        self._marks.clear()
        self._marked.clear()

    async def _flush_rounds(self) -> None:
        while True:
            await self._flush_pending()
            if not self._answering:
                return
            self.check_current()
            # every answer is out: the next owner may start past the records they answer, so
            # the partitions' `keys.OUTPUTS_FROM` moves on now (on a quiet partition, nothing
            # else would move it, and every takeover would answer them again)
            for (topic, partition), first in self._answering:
                self._own.answered((topic, partition), first)
                if self._own.owns(TENANT, partition):
                    self.note_outputs_from(partition)
            self._answering.clear()

    def note_outputs_from(self, partition: int) -> None:
        """Write a tenant partition's `keys.OUTPUTS_FROM` with the next flush, even if it
        writes nothing else there."""
        self._writes.setdefault((keys.TENANT_STATE, partition), {})

    def _reread_unanswered(self) -> None:
        """A failed flush: a deposed owner's output records whose answers may not have gone out
        are read again by this owner's next write or check (a failure the worker survives
        brings no takeover to answer them)."""
        for tp, first in self._answering:
            if self._own.expected.get(tp, first) > first:
                self._own.expected[tp] = first
            self._own.answered(tp, first)  # the lineage stands before it: the row does too
        self._answering.clear()

    async def _flush_pending(self) -> None:
        while self.pending:
            self.check_current()
            writes, outputs, callbacks = self._writes, self._outputs, self._callbacks
            self._writes, self._outputs, self._callbacks = {}, {}, []
            self._sorted = {}
            self._undo.clear()
            self._flushes += 1
            acked: dict[TopicPartition, tuple[int, int]] = {}
            output_groups, output_headers = await self._output_groups(outputs)
            self.check_current()
            if output_groups and self._outputs_first:
                acked.update(await self._log.send(output_groups, output_headers))
                self.check_current()
            changelog_groups: dict[TopicPartition, list[Pair]] = {}
            changelog_headers: dict[TopicPartition, Headers] = {}
            tables_written = any(writes.values())
            self._note_outputs_from(writes, output_groups)
            # what each table partition's changelog records and local write hold: key -> value
            # as written (None: deleted), taken once from the pending rows
            encoded: dict[tuple[str, int], dict[bytes, bytes | None]] = {}
            for (table, partition), rows in writes.items():
                stage, changelog = TABLES[table]
                tp = (changelog, partition)
                changelog_headers[tp] = epoch_header(self._own.epoch_of(stage, partition))
                local = encoded[(table, partition)] = {key: row[0] for key, row in rows.items()}
                changelog_groups[tp] = list(local.items())
                rank = keys.CHANGELOG_ORDER.get(table)
                if rank is not None:  # (a stable sort: the first-write order within a rank)
                    changelog_groups[tp].sort(key=lambda row: rank(row[0] or b"", row[1]))
            if changelog_groups:
                acked.update(await self._log.send(changelog_groups, changelog_headers))
            moves: Moves = {}
            zombies = await self._follow_lineage(acked, moves)
            self._mark(zombies)
            try:
                await self._write_locally(
                    encoded, acked, callbacks, output_groups, output_headers, zombies, moves
                )
            except (Fenced, RecordTooLarge):
                raise
            except Exception as exc:
                if not tables_written:
                    # nothing local was written but `keys.OUTPUTS_FROM` (noted again with the
                    # next flush) and marks: the batch may simply be applied again, and its
                    # changelog's lineage reads a deposed owner's records found again (else
                    # nothing answers them before a takeover: helper-109)
                    self._unmove(moves)
                    raise
                raise LocalWriteFailed(f"{type(exc).__name__}: {exc}") from exc
            if zombies:
                try:
                    await self._repair(zombies)
                except BaseException:
                    # a failure the worker survives (a read: the group is applied again) brings
                    # no takeover to repair the marks: the next write or check reads past the
                    # records again and answers them (answering twice is harmless)
                    self._unmove(moves)
                    raise

    def _note_outputs_from(
        self,
        writes: dict[tuple[str, int], Pending],
        output_groups: dict[TopicPartition, list[Pair]],
    ) -> None:
        """With a tenant partition's rows or fenced outputs, where the lineage of its fenced
        outputs stands before this flush sends any, under this owner's epoch
        (`keys.OUTPUTS_FROM`): a takeover starts there, not at the end offsets it reads, so a
        deposed owner's output records that land after this owner's last check and before the
        next takeover are still read, and answered (simulator seeds 16980225, 16980244,
        16980343: a count record of a window an older license cut stayed on the count topic
        for good). The offsets are this owner's own, safe in any subset of the send that
        lands: everything before them was read by its lineage, and answered
        (`Ownership.outputs_from`)."""
        partitions = {p for table, p in writes if table == keys.TENANT_STATE}
        partitions |= {p for topic, p in output_groups if topic in FENCED_OUTPUTS}
        for partition in sorted(partitions):
            if not self._own.owns(TENANT, partition):
                continue
            stands = self._own.outputs_from(partition)
            if stands:
                epoch = self._own.epoch_of(TENANT, partition)
                row = {"epoch": list(epoch), "from": stands}
                encoded = bytes(memoryview(orjson.dumps(row)))
                writes.setdefault((keys.TENANT_STATE, partition), {})[keys.OUTPUTS_FROM] = (
                    encoded,
                    row,
                )

    async def _write_locally(
        self,
        writes: dict[tuple[str, int], dict[bytes, bytes | None]],
        acked: dict[TopicPartition, tuple[int, int]],
        callbacks: list[Callable[[], None]],
        output_groups: dict[TopicPartition, list[Pair]],
        output_headers: dict[TopicPartition, Headers],
        zombies: dict[TopicPartition, list[LogRecord]],
        moves: Moves,
    ) -> None:
        """Steps 4 and 5 (and the tenant stage's outputs in between): from the first local write
        on, a failure is `LocalWriteFailed` for the caller (see streams/stages/store.py)."""
        self.check_current()
        for (table, partition), local in writes.items():
            stage, changelog = TABLES[table]
            if self._marks:
                local.update(self._mark_rows(table, partition))
            self._state.apply(
                table,
                partition,
                local,
                acked[(changelog, partition)][1],
                self._own.epoch_of(stage, partition),
            )
        if output_groups and not self._outputs_first:
            self.check_current()
            sent = await self._log.send(output_groups, output_headers)
            zombies.update(await self._follow_lineage(sent, moves))
            # (a takeover's in-memory state is a newer takeover's to set once overtaken)
            self.check_current()
        for callback in callbacks:
            callback()

    async def check_lineage(self, stage: str, partitions: Sequence[int]) -> None:
        """Look for records a deposed owner wrote after this owner's last write (a periodic
        check: a flush finds those that land between two of its own writes) and repair them."""
        zombies: dict[TopicPartition, list[LogRecord]] = {}
        moved: Moves = {}
        try:
            for partition in partitions:
                if not self._own.owns(stage, partition):
                    continue
                for topic in fenced_topics(stage):
                    tp = (topic, partition)
                    expected = self._own.expected.get(tp)
                    if expected is None:
                        continue
                    end = await self._log.end_offset(topic, partition)
                    if end > expected:
                        self._own.expected[tp] = end
                        moved[tp] = (expected, end)
                        found = await self._foreign(tp, expected, end)
                        if found:
                            zombies[tp] = found
                            self._answer_later(tp, found)
        except Exception:
            self._unmove(moved)
            self._reread_unanswered()
            raise
        if zombies:
            # marked on disk at once: if the process dies before the repair is durable, the
            # marks are what the next takeover repairs; if it survives the failure (a read: the
            # check is run again), the lineage moves back, so that the next check (or write)
            # finds the records again and answers them: no takeover comes
            try:  # (a failed write of the marks moves the lineage back too: helper-110)
                self._mark(zombies)
                for table, partition in list(self._marks):
                    rows = self._mark_rows(table, partition)
                    self._state.apply(table, partition, rows, -1, NO_EPOCH)  # both only grow
                await self._repair(zombies)
                await self.flush()
            except BaseException:
                self._marks.clear()
                self._marked.clear()
                self._unmove(moved)
                self._reread_unanswered()
                raise

    async def repair_marked(
        self, stage: str, partitions: Sequence[int], heal: Heal | None = None
    ) -> None:
        """At a takeover: write again every key marked in these partitions' state (a restore
        skipped a deposed owner's record of it, or a flush found one and crashed before its
        repair), answer the records the marks name (read back from the changelog: a record of
        what a deposed owner published names count records that may be out), make it durable
        and drop the marks.

        `heal` first gives a stage the marked keys of each table partition with the deposed
        owner's records of them that are still in the changelog, to write the keys it can
        recompute: the restore kept nothing for a marked key when Kafka's cleaner removed the
        rightful record the late one superseded (docs/architecture.md, "What Kafka removes")."""
        marked: dict[tuple[str, int], list[bytes]] = {}
        zombies: dict[TopicPartition, list[LogRecord]] = {}
        for table, (owner, changelog) in TABLES.items():
            if owner != stage:
                continue
            for partition in partitions:
                marks = self._state.repairs(table, partition)
                if not marks:
                    continue
                marked[(table, partition)] = sorted(marks)
                records: list[LogRecord] = []
                if heal is not None or self._repair_outputs is not None:
                    offsets = sorted({offset for named in marks.values() for offset in named})
                    records = [
                        record
                        for record in await _read_offsets(self._log, changelog, partition, offsets)
                        if record.key in marks
                    ]
                if heal is not None:
                    named: dict[bytes, list[LogRecord]] = {key: [] for key in sorted(marks)}
                    for record in records:
                        named[record.key or b""].append(record)
                    await heal(self, table, partition, named)
                rewrite_keys(self, table, partition, sorted(marks))
                if self._repair_outputs is not None and records:
                    zombies[(changelog, partition)] = records  # what they published is answered
        if zombies:
            await self._repair(zombies)
        await self.flush()
        self.check_current()
        for (table, partition), keys_ in marked.items():
            self._state.forget_repairs(table, partition, keys_)

    def _mark(self, zombies: dict[TopicPartition, list[LogRecord]]) -> None:
        """Remember zombie changelog records until the next local write marks their keys: a
        crash after that write and before their repair leaves them below the stored offset,
        where no restore reads them again, so the mark is what the next takeover repairs."""
        for (topic, partition), records in zombies.items():
            table = CHANGELOG_TABLE.get(topic)
            if table is None:
                continue
            marks = self._marks.setdefault((table, partition), {})
            for record in records:
                if record.key is not None:
                    marks.setdefault(record.key, set()).add(record.offset)

    def _mark_rows(self, table: str, partition: int) -> dict[bytes, bytes]:
        """The marks to write with a table partition's rows (merged with those on disk)."""
        marks = self._marks.pop((table, partition), None)
        if not marks:
            return {}
        names = [keys.REPAIR + key for key in marks]
        on_disk = self._state.get_many(table, partition, names)
        # a mark that was on disk before (a restore's) names records this repair does not
        # answer: it stays, for the takeover's `repair_marked` (answering twice is harmless)
        self._marked.setdefault((table, partition), set()).update(
            key for key, stored in zip(marks, on_disk, strict=True) if stored is None
        )
        return {
            name: mark_value([*offsets, *marked_offsets(stored)])
            for name, offsets, stored in zip(names, marks.values(), on_disk, strict=True)
        }

    async def _output_groups(
        self, outputs: dict[tuple[str, int | None], list[Pair]]
    ) -> tuple[dict[TopicPartition, list[Pair]], dict[TopicPartition, Headers]]:
        """The outputs by the partition they go to, and the epoch headers of fenced ones."""
        groups: dict[TopicPartition, list[Pair]] = {}
        headers: dict[TopicPartition, Headers] = {}
        for (topic, partition), records in outputs.items():
            if partition is not None:
                if topic in FENCED_OUTPUTS:
                    owner = stage_of_topic(topic) or ""
                    headers[(topic, partition)] = epoch_header(self._own.epoch_of(owner, partition))
                groups.setdefault((topic, partition), []).extend(records)
                continue
            for record in records:
                target = await self._log.partition_of(topic, record[0])
                groups.setdefault((topic, target), []).append(record)
        return groups, headers

    async def _follow_lineage(
        self, acked: dict[TopicPartition, tuple[int, int]], moves: Moves
    ) -> dict[TopicPartition, list[LogRecord]]:
        """Check that nothing landed between this owner's previous and new records (`moves`:
        told how far each partition's lineage moved, to move it back if the repair fails)."""
        zombies: dict[TopicPartition, list[LogRecord]] = {}
        moved: Moves = {}
        try:
            for tp, (first, last) in sorted(acked.items()):
                if stage_of_topic(tp[0]) is None:
                    continue
                self.check_current()
                expected = self._own.expected.get(tp)
                self._own.expected[tp] = last + 1
                moved[tp] = (expected, last + 1)
                if expected is not None and first > expected:
                    found = await self._foreign(tp, expected, first)
                    self.check_current()
                    if found:
                        zombies[tp] = found
                        self._answer_later(tp, found)
        except Exception:
            self._unmove(moved)
            raise
        moves.update(moved)
        return zombies

    def _answer_later(self, tp: TopicPartition, found: list[LogRecord]) -> None:
        if tp[0] in FENCED_OUTPUTS:
            self._answering.append((tp, self._own.found_zombies(tp, found)))

    def _unmove(self, moved: Moves) -> None:
        """A lineage check that failed (a read back of the log): the ranges it did not read,
        and the zombies it found and nobody marked, are read again by the next write (the
        group applied again) or check; moved past them, no flush would ever look at them."""
        if self._overtaken():
            return  # the process's lineage is a newer takeover's now
        for tp, (before, after) in moved.items():
            if self._own.expected.get(tp) != after:
                continue  # moved on since (or released)
            if before is None:
                del self._own.expected[tp]
            else:
                self._own.expected[tp] = before

    async def _foreign(self, tp: TopicPartition, start: int, end: int) -> list[LogRecord]:
        """Records in [start, end) of a partition this owner writes alone, from other owners:
        raises `Fenced` for a newer one; returns the older ones (a deposed owner's zombies).
        Records of this owner's own epoch are its retried sends: harmless duplicates."""
        stage = stage_of_topic(tp[0]) or ""
        mine = self._own.epoch_of(stage, tp[1])
        zombies = []
        for record in await self._log.read(tp[0], tp[1], start, end):
            theirs = record.epoch
            if theirs > mine:
                raise Fenced(
                    f"{stage} partition {tp[1]}: an owner with epoch {theirs} wrote after this "
                    f"one ({mine})"
                )
            if theirs < mine:
                zombies.append(record)
        return zombies

    async def _repair(self, zombies: dict[TopicPartition, list[LogRecord]]) -> None:
        """Write the current value of every key a zombie record touched, so that the last
        record of each key is this owner's again."""
        for (topic, partition), records in zombies.items():
            log.warning(
                "%d records of a deposed owner found in %s/%d; writing their keys again",
                len(records),
                topic,
                partition,
            )
            self._own.zombies_repaired += len(records)
            table = CHANGELOG_TABLE.get(topic)
            if table is not None:
                rewrite_keys(self, table, partition, [r.key for r in records if r.key is not None])
            # a stage may answer its changelog's zombie records too (what they published)
            if self._repair_outputs is not None:
                done = self._repair_outputs(self, topic, partition, records)
                if done is not None:
                    await done


async def _read_offsets(
    log_: Log, topic: str, partition: int, offsets: Sequence[int]
) -> list[LogRecord]:
    """The records at these offsets that still exist (consecutive offsets read as one range)."""
    wanted = set(offsets)
    records: list[LogRecord] = []
    start = None
    for index, offset in enumerate(offsets):
        if start is None:
            start = offset
        if index + 1 == len(offsets) or offsets[index + 1] != offset + 1:
            found = await log_.read(topic, partition, start, offset + 1)
            records += [record for record in found if record.offset in wanted]
            start = None
    return records


def rewrite_keys(batch: DurableBatch, table: str, partition: int, keys_: Sequence[bytes]) -> None:
    """Write the current value of each key again (a tombstone where there is none), so that its
    last changelog record is this owner's: the answer to a deposed owner's record of it."""
    for key in dict.fromkeys(keys_):
        current = batch.get(table, partition, key)
        if current is None:
            batch.delete(table, partition, key)
        else:
            batch.put(table, partition, key, current)


def _merged(
    mine: Pending,
    ordered: list[bytes],
    local: list[tuple[bytes, bytes]],
    prefix: bytes,
    after: bytes | None,
    bound: bytes | None,
) -> list[tuple[bytes, Any]]:
    """Local rows and this batch's writes with `prefix` in (`after`, `bound`], in key order,
    without what the batch deleted (`ordered`: the keys of `mine`, sorted)."""
    merged: dict[bytes, Any] = {key: _Raw(raw) for key, raw in local}
    start = bisect_left(ordered, prefix)
    if after is not None:
        start = max(start, bisect_right(ordered, after))
    # the keys with a prefix are one run of the order: the first without it ends it
    for index in range(start, len(ordered)):
        key = ordered[index]
        if not key.startswith(prefix) or (bound is not None and key > bound):
            break
        merged[key] = mine[key][1]
    return [
        (key, value.decode() if isinstance(value, _Raw) else value)
        for key, value in sorted(merged.items())
        if value is not _DELETED
    ]


def _encoded(table: str, key: bytes, value: Any) -> bytes:
    """`value` as the bytes a row of `table` under `key` stores, or `RecordTooLarge`.

    orjson's bytes keep the 4 KiB buffer they were written into; a batch holds thousands of
    small values until its flush, so each is copied into a bytes of its own size."""
    encoded = bytes(memoryview(orjson.dumps(value)))
    if len(encoded) + len(key) > MAX_RECORD_BYTES:
        raise RecordTooLarge(
            f"{table} value of {len(encoded):,} bytes under {key[:80]!r} exceeds "
            f"{MAX_RECORD_BYTES:,}"
        )
    return encoded


class _Raw:
    """A local row's value, decoded only if it is returned."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def decode(self) -> Any:
        return orjson.loads(self.raw)


async def take_over(
    batch: DurableBatch,
    stage: str,
    partitions: Sequence[int],
    generation: int,
    still_member: StillMember,
) -> dict[int, Epoch]:
    """Own `partitions` of `stage` under new epochs, durable before anything else is written.

    First everything that decides the epochs is read: the partitions' restored epochs and, for
    the learner stage, what landed since the restore (`catch_up`). Then the group coordinator
    is asked whether `generation` is still the group's and this process in it; if not, this
    process was deposed meanwhile and takes nothing over (`Fenced`: its restore may have read
    its successor's takeover, and counting on from it would outrank that successor). Each
    epoch is the highest counter read plus one, with this generation: an owner of a later
    generation reads after the coordinator's answer, so it reads this one's counter or more
    and its generation breaks a tie. A counter read with a later generation than this one is
    then an earlier life's of the group (deleted and made again: generations start at 1), and
    counting on from it is what outranks that life's owners.
    """
    table = keys.LEARNER_STATE if stage == LEARNER else keys.TENANT_STATE
    read: dict[int, int] = {}
    for partition in sorted(partitions):
        # the lineage starts at the end offsets read now; the learner stage catches up to them
        await batch._own.start_at_end(stage, partition, batch._log, batch.check_current)
        if stage == LEARNER:
            await catch_up(batch, stage, partition)
        read[partition] = _highest_counter(batch, stage, partition)
    if not await still_member(generation):
        raise Fenced(
            f"{stage} takeover of generation {generation}: the consumer group has moved on, "
            "so this process was deposed meanwhile and takes nothing over"
        )
    epochs: dict[int, Epoch] = {}
    for partition, counter in read.items():
        epoch = (counter + 1, generation)
        batch._own.claim(stage, partition, epoch)
        if stage == TENANT:
            # The tenant stage's lineage starts where its restore ended, not at the end offset
            # read now: a deposed owner's records that landed in between are in no local row,
            # and the first flush finds them, writes their keys again and answers the count
            # records they published (seed 1751708: this owner's rows lacked a published
            # window that later restores read, and nobody tombstoned its record). The learner
            # stage catches up with such records instead (`catch_up`): answering them would
            # tombstone attempts on the public `attempts` topic until a replay wrote them again.
            # (Rows that reach no offset restored an empty changelog: their lineage starts at
            # its first record.)
            restored = batch._state.restored_offset(table, partition)
            batch._own.start_lineage((TABLES[table][1], partition), restored + 1)
            # and the outputs' lineage where the last owner's stood at its last flush
            # (`DurableBatch._note_outputs_from`), if the last owner wrote it: a partition
            # without it, or whose last owner did not write it (an older version, during a
            # rolling upgrade: the row is stale by then), starts at the end
            for topic, offset in _outputs_from(batch, partition).items():
                batch._own.start_lineage((topic, partition), offset)
        batch.put(table, partition, keys.EPOCH, list(epoch))
        epochs[partition] = epoch
    await batch.flush()
    return epochs


def _outputs_from(batch: DurableBatch, partition: int) -> dict[str, int]:
    """A tenant partition's restored `keys.OUTPUTS_FROM`, if its last owner wrote it: under
    the epoch stored, or a later one (a takeover whose send landed the row, which goes first,
    and not its epoch: it wrote nothing else); {} otherwise (an older version's owner came
    after the row's)."""
    row = batch.get(keys.TENANT_STATE, partition, keys.OUTPUTS_FROM)
    stored = batch.get(keys.TENANT_STATE, partition, keys.EPOCH)
    if not isinstance(row, dict) or not isinstance(row.get("epoch"), list):
        return {}
    if isinstance(stored, list) and tuple(row["epoch"]) < tuple(stored):
        return {}
    return {
        topic: offset
        for topic, offset in (row.get("from") or {}).items()
        if topic in FENCED_OUTPUTS and isinstance(offset, int)
    }


def _highest_counter(batch: DurableBatch, stage: str, partition: int) -> int:
    """The highest takeover counter a stage partition's local state has read from its
    changelogs: its stored epoch ([counter, generation]) and the fence of each of its tables
    (the highest epoch a restore or catch-up applied there)."""
    counters = [
        batch._state.fence(table, partition)[0] for table in TABLES if TABLES[table][0] == stage
    ]
    table = keys.LEARNER_STATE if stage == LEARNER else keys.TENANT_STATE
    stored = batch.get(table, partition, keys.EPOCH)
    if isinstance(stored, list) and stored:
        counters.append(int(stored[0]))
    return max(counters, default=0)


async def catch_up(batch: DurableBatch, stage: str, partition: int) -> None:
    """Apply to a stage partition's local tables what landed in their changelogs since the
    restore ended, up to where this owner's lineage starts, as the restore would have: a
    deposed owner's records may land between the two, and a record below the stored offset
    that no local row has is never read again.

    Seed 1921915: a deposed learner owner's attempt and membership records landed after the
    new owner's restore; its lineage began past them. It died before replaying their command
    and, restarted, restored its attempts (their offset was not stored) but not its memberships
    (it was): an attempt without its membership, counted by nobody. Here the records enter the
    rows, and the replay of their command finds them (a repeat that heals what they lack)."""
    state, log_ = batch._state, batch._log
    for table, (owner, changelog) in TABLES.items():
        if owner != stage:
            continue
        start = state.restored_offset(table, partition) + 1
        end = batch._own.expected[(changelog, partition)]
        if end <= start:
            continue
        records = await log_.read(changelog, partition, start, end)
        writes, fence = restore_rule(
            records,
            state.fence(table, partition),
            functools.partial(state.get_many, table, partition),
        )
        batch.check_current()
        log.info(
            "%s/%d: caught up with records that landed after the restore ended, up to offset "
            "%d (%d keys of a deposed owner marked)",
            changelog,
            partition,
            end - 1,
            sum(1 for key in writes if key.startswith(keys.REPAIR)),
        )
        state.apply(table, partition, writes, end - 1, fence)
