"""Tenant stage: licenses, partial counts summed per window, and every output of a tenant.

Its keys are listed in streams/stages/keys.py (all of a tenant's keys live in its partition).
It writes `active-learner-counts`, `threshold-events` and `deletion-receipts` to the partition
of the same number as its own, so that, like its changelog, each of those partitions has one
writer: a record there that the owner did not write is a deposed owner's, found and answered by
`repair_outputs` (streams/stages/batch.py).

Every decision takes its time from the command being handled (its Kafka timestamp, or a tick's
`now`), never from the wall clock.

State first, outputs second. The stage writes its state (durable) before it sends the outputs
that follow from it, and the state says what the topics should show: every window's count
(`pub/`), the last event of every window and threshold (`thr/`), every receipt (`del/`). A
crash in between loses outputs, never state, so:
  - a new owner sends the truth again when it takes a partition over (`take_over_outputs`):
    every window's count, the last threshold events, receipts and parts not yet confirmed;
  - what cannot be sent again from the truth alone is kept until a later tick confirms it was
    sent (after a flush): tombstones of windows a license removed (`pub/`.gone) and threshold
    events (`thrp/`, so that a flap inside one batch loses no alert);
  - a replay, which may see state of commands after it, sends what differs from that state;
    the replay of the command that started a deletion request (or completed it) sends its parts
    (or its receipt) again.
So the last record of every key is right, no event is lost, and no crossing number is used
twice, whatever a crash cut short.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import orjson

from schemas import topics
from schemas.licenses import License
from streams.domain.dead_letters import encode
from streams.domain.licenses import cut_of, license_from
from streams.domain.selectors import Selector
from streams.domain.sources import superseded
from streams.domain.tenants import (
    CountUpdate,
    count_record,
    merge_partials,
    plan_publication,
    publication_ready,
    sum_partials,
)
from streams.domain.thresholds import (
    Crossing,
    evaluate,
    event_notify,
    event_record,
    kept_event,
    last_events,
    named_lists,
    names_used,
    notify_name,
    split_legacy,
)
from streams.domain.windows import Cut, Window, window_of, window_starting
from streams.stages import commands, ingest, keys, metrics
from streams.stages.store import TENANT, Batch, LogRecord, Record, scan_all
from streams.stages.tenant_deletions import (
    UNCOUNTED,
    TenantDeletions,
    stored_receipt,
    uncounted_mark,
)

log = logging.getLogger(__name__)


def _time(timestamp_ms: int) -> datetime:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)


class TenantStage:
    def __init__(
        self,
        learner_partitions: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        unsafe_skip: Callable[[str], None] | None = None,
    ) -> None:
        self.learner_partitions = learner_partitions
        self.deletions = TenantDeletions(learner_partitions)
        self.clock = clock  # only for records re-sent to answer a deposed owner's
        # Tenants a tick has nothing to do for (see `on_tick`): per (partition, tenant), the
        # current window of its last publication that went all the way and is durable, kept
        # while no command about the tenant came since (`_touched` numbers those).
        self._settled: dict[tuple[int, str], Window] = {}
        self._touched: dict[tuple[int, str], int] = {}
        self._touches = 0
        # the simulator's proof: a tenant a tick skips is published all the same, in a savepoint,
        # and anything that would have written is reported here
        self._unsafe_skip = unsafe_skip

    def give_up(self, batch: Batch, record: Record, exc: BaseException) -> None:
        ingest.give_up(batch, record, exc, _time(record.timestamp))

    async def handle_record(self, batch: Batch, record: Record) -> None:
        partition, offset = record.partition, record.offset
        now = _time(record.timestamp)  # the command's own time: a replay decides the same
        command = commands.decode(record.value)
        if not isinstance(command, commands.Tick):
            self._touch_tenants_of(partition, command)
        match command:
            case commands.Partials() as command:
                self.on_partials(batch, record, command, now)
            case commands.License() as command:
                self.on_license(batch, partition, command, now)
            case commands.DeletionRequest() as command:
                self.deletions.on_request(batch, partition, offset, command, now)
            case commands.DeletionError() as command:
                self.deletions.on_error(batch, partition, command)
            case commands.PartReport() as command:
                self.on_part_report(batch, partition, offset, command, now)
            case commands.Tick() as command:
                await self.on_tick(batch, partition, datetime.fromisoformat(command.now))
            case _:
                log.error("tenant-commands: not a command at %d/%d", partition, offset)
                metrics.stage_errors_total.labels("tenants").inc()

    # -- licenses and counts --------------------------------------------------------------------
    def on_license(
        self, batch: Batch, partition: int, command: commands.License, now: datetime
    ) -> None:
        key = keys.tenant_license(command.tenant_id)
        stored = batch.get(keys.TENANT_STATE, partition, key)
        if stored is not None and superseded(stored.get("source"), command.source):
            return  # an older license record than the one applied (a late or replayed send)
        incoming = {"license": command.license, "source": command.source}
        if stored != incoming:
            batch.put(keys.TENANT_STATE, partition, key, incoming)
        self.publish(batch, partition, command.tenant_id, now)

    def on_partials(
        self, batch: Batch, record: Record, command: commands.Partials, now: datetime
    ) -> None:
        """Partial counts of several tenants, each from one or more learner partitions.

        A command that fails is taken apart by the loop (`split`): each tenant is then
        applied whole or not at all, and one that fails (a bug, never an input) is
        dead-lettered on its own while the others' counts go on (given up with the command, a
        tenant that failed every time froze the counts of every tenant it was sent with)."""
        for tenant_id, parts in command.tenants.items():
            # the earliest launch behind these reports: only for the latency metric
            launched = [p.pop("oldest_ms", None) for p in parts.values()]
            oldest_ms = min((ms for ms in launched if ms), default=None)
            self._on_partial(batch, record, tenant_id, parts, oldest_ms, now)

    @staticmethod
    def split(record: Record) -> list[Record]:
        """The parts of a command that failed (streams/stages/loop.py): each tenant of a
        `partials` command on its own, at the command's position. Other commands have no parts
        (none: tried whole)."""
        command = commands.decode(record.value)
        if not isinstance(command, commands.Partials):
            return []
        return [
            dataclasses.replace(record, value=commands.encode(commands.Partials({tenant: parts})))
            for tenant, parts in command.tenants.items()
        ]

    def _on_partial(
        self,
        batch: Batch,
        record: Record,
        tenant_id: str,
        parts: dict[str, Any],
        oldest_ms: int | None,
        now: datetime,
    ) -> None:
        _, partials = self._take_partials(batch, record.partition, tenant_id, parts)
        # also when nothing changed: the replay of a command whose release a crash lost
        self.deletions.release_counted(batch, record.partition, tenant_id)
        if self.publish(batch, record.partition, tenant_id, now, partials) and oldest_ms:
            batch.on_durable(_observe_latency(oldest_ms))

    def on_part_report(
        self,
        batch: Batch,
        partition: int,
        offset: int,
        command: commands.PartReport,
        now: datetime,
    ) -> None:
        """A deletion part's report, with its partition's count after the part: the count is
        taken like a partial count and published; once the request is complete (and no longer
        holds the thresholds) they are evaluated. A tenant with nothing published and nothing
        counted stays unknown: a request for it does not make it appear."""
        after = command.report.pop(commands.PARTIAL_AFTER, None)  # not stored with the report
        catching_up = command.report.pop(commands.CATCHING_UP, False)
        tenant_id = command.request["tenant_id"]
        if catching_up and after is None:
            since = catching_up if isinstance(catching_up, list) else None
            mark = uncounted_mark(batch, partition, tenant_id, command.partition, since)
            command.report[UNCOUNTED] = mark
        completed = self.deletions.on_part_report(batch, partition, offset, command, now)
        changed = (
            after is not None
            and self._take_partials(batch, partition, tenant_id, {str(command.partition): after})[0]
        )
        self.deletions.release_counted(batch, partition, tenant_id)
        published = batch.get(keys.TENANT_STATE, partition, keys.published(tenant_id))
        if changed or (completed and published is not None):
            self.publish(batch, partition, tenant_id, now)

    def _take_partials(
        self, batch: Batch, partition: int, tenant_id: str, parts: dict[str, Any]
    ) -> tuple[bool, dict[str, Any]]:
        """Store the newer of these partial counts (late reports of old owners lose); whether
        anything changed, and the tenant's partials now (what `stored_partials` would read back:
        handed to `publish`, it saves a second scan of them, the tenant stage's costliest read)."""
        own, legacy = _read_partials(batch, partition, tenant_id)
        stored = merge_partials(legacy, own) if legacy else own
        merged = merge_partials(stored, parts)
        if legacy:
            # an older version's one record: split into a key per partition, then gone
            batch.delete(keys.TENANT_STATE, partition, keys.legacy_partials(tenant_id))
            own = {}
        for learner_partition, partial in merged.items():
            if own.get(learner_partition) != partial:
                key = keys.partial(tenant_id, learner_partition)
                batch.put(keys.TENANT_STATE, partition, key, partial)
        return merged != stored, merged

    async def on_tick(self, batch: Batch, partition: int, now: datetime) -> None:
        """The wall clock moved on: what earlier flushes sent is confirmed, every tenant whose
        new window began gets its zero record, and a deposed owner's late records are answered.

        A tenant whose last publication (all the way: counts and thresholds, durable) was in
        the window that `now` is in, with no command about it since, is skipped: its publication
        depends on the clock only through its current window and a deletion's hold (which holds
        for every earlier `now` too, and only ever skips the evaluation of thresholds), so it
        would write nothing (with 10,000 tenants of 24 windows, publishing every tenant took
        seconds of every tick)."""
        await batch.flush()  # everything before this tick is sent: it can be confirmed
        published = scan_all(batch, keys.TENANT_STATE, partition, keys.PUBLISHED, raw=True)
        self.confirm(batch, partition, published)
        skipped = 0
        for key, _ in published:
            tenant_id = keys.tenant_of_published(key)
            settled = self._settled.get((partition, tenant_id))
            if settled is None or not settled.contains(now):
                self.publish(batch, partition, tenant_id, now)
                continue
            skipped += 1
            if self._unsafe_skip is not None:
                self._prove_skip(batch, partition, tenant_id, now)
        metrics.tick_tenants_total.labels("skipped").inc(skipped)
        metrics.tick_tenants_total.labels("published").inc(len(published) - skipped)
        await batch.check_lineage(TENANT, [partition])

    def confirm(self, batch: Batch, partition: int, published: list[tuple[bytes, bytes]]) -> None:
        """Forget what was kept until sent: tombstoned windows and threshold events (the caller
        flushed: all of it is out). `published`: the partition's publication records, raw."""
        for key, raw in published:
            if b'"gone":["' not in raw:  # (orjson writes no spaces: an empty list is `[]`)
                continue
            pub = orjson.loads(raw)
            if pub.get("gone"):
                batch.put(keys.TENANT_STATE, partition, key, {**pub, "gone": []})
        # (an older version's one record of a tenant keeps its pending events until it is
        # split: a takeover may send them once more, which receivers drop by event_id)
        pending = _scan_all(batch, partition, keys.PENDING_THRESHOLD_EVENTS)
        _records_past_pending(batch, partition, pending)
        for key, _ in pending:
            batch.delete(keys.TENANT_STATE, partition, key)
            # (a window record moved past its pending events changed the tenant's threshold
            # state: this tick evaluates it again)
            self._touch(partition, keys.pending_event_parts(key)[0])

    def unsettle(self, partition: int) -> None:
        """The partition's state may differ from what this stage last published from (it was
        restored, or written by other code): the next tick publishes every tenant of it. (Its
        entries go: a settling callback still to come finds its touch number gone, as the
        numbers are never used twice.)"""
        for where in [where for where in self._touched if where[0] == partition]:
            del self._touched[where]
            self._settled.pop(where, None)

    def _touch(self, partition: int, tenant_id: str) -> None:
        """Something about the tenant may change: the next tick publishes it."""
        self._touches += 1
        self._touched[(partition, tenant_id)] = self._touches
        self._settled.pop((partition, tenant_id), None)

    def _touch_tenants_of(self, partition: int, command: Any) -> None:
        tenants: list[Any]
        match command:
            case commands.Partials():
                tenants = list(command.tenants)
            case commands.License():
                tenants = [command.tenant_id]
            case commands.DeletionRequest() | commands.PartReport():
                tenants = [command.request.get("tenant_id")]
            case commands.DeletionError():
                tenants = [command.receipt.get("tenant_id")]
            case _:
                tenants = [None]
        for tenant_id in tenants:
            if isinstance(tenant_id, str):
                self._touch(partition, tenant_id)
            else:  # (no command comes without its tenant; if one did, every tenant is touched)
                self.unsettle(partition)

    def _settle(self, batch: Batch, partition: int, tenant_id: str, current: Window) -> None:
        """The tenant's publication went all the way: once it is durable, and unless a command
        about the tenant came in the meantime, ticks inside `current` skip it."""
        where = (partition, tenant_id)
        touch = self._touched.get(where)

        def settled() -> None:
            if self._touched.get(where) == touch:
                self._settled[where] = current

        batch.on_durable(settled)

    def _prove_skip(self, batch: Batch, partition: int, tenant_id: str, now: datetime) -> None:
        mark = batch.savepoint()
        self._publish(batch, partition, tenant_id, now)
        if batch.wrote_since(mark):
            self._unsafe_skip(  # type: ignore[misc]
                f"a tick at {now.isoformat()} skipped {tenant_id!r} on tenant partition "
                f"{partition}, whose publication would have written"
            )
        batch.rollback(mark)

    async def take_over_outputs(self, batch: Batch, partition: int, now: datetime) -> None:
        """A new owner sends the truth of its partition again: whatever a crash of the old one
        kept from going out (or a deposed owner's late record put last) is right afterwards."""
        self.unsettle(partition)
        for key, pub in _scan_all(batch, partition, keys.PUBLISHED):
            tenant_id = keys.tenant_of_published(key)
            license_, licensed = license_from(tenant_id, {"license": pub.get("license")})
            cut = Cut.from_id(pub["cut"])
            updates = [
                CountUpdate(window, counted[0], counted[1])
                for start, counted in sorted(pub["windows"].items())
                if (window := window_starting(cut, date.fromisoformat(start))) is not None
            ]
            # (state written before a window published again left `gone`: it stays published)
            gone = [start for start in pub.get("gone", []) if start not in pub["windows"]]
            self._emit_counts(batch, partition, tenant_id, updates, gone, license_, licensed, now)
        # events not confirmed sent first, then the last of every window and threshold (an
        # older version's one record of a tenant holds both, whole)
        pending: list[tuple[str, Any]] = []
        # the highest crossing of each window's threshold with an event not yet confirmed: a
        # crash may land such events without their window record, whose last event is then an
        # earlier one, which must not go out after them
        beyond: dict[tuple[str, str], dict[str, int]] = {}
        for key, event in _scan_all(batch, partition, keys.PENDING_THRESHOLD_EVENTS):
            tenant_id, at, pct, crossing = keys.pending_event_parts(key)
            pending.append((tenant_id, event))
            highest = beyond.setdefault((tenant_id, at), {})
            highest[str(pct)] = max(highest.get(str(pct), 0), crossing)
        last: list[tuple[str, Any]] = []
        for key, thr in _scan_all(batch, partition, keys.THRESHOLDS):
            tenant_id, start = keys.thresholds_key_parts(key)
            if start is not None:
                stored_list = _stored_lists(batch, partition, tenant_id)
                after = beyond.get((tenant_id, start), {})
                last += [(tenant_id, e) for e in last_events(tenant_id, thr, stored_list, after)]
            else:
                pending += [(tenant_id, event) for event in thr.get("pending", [])]
                for at, per_pct in thr["windows"].items():
                    after = beyond.get((tenant_id, at), {})
                    last += [
                        (tenant_id, e["event"])
                        for pct, e in per_pct.items()
                        if e.get("event") and after.get(pct, 0) <= e["crossings"]
                    ]
        for tenant_id, event in pending + last:
            batch.emit(topics.THRESHOLD_EVENTS, tenant_id.encode(), encode(event), partition)
        await batch.flush()
        # the flush wrote the partition's `keys.OUTPUTS_FROM` before its sends: the row moves
        # past them now, or on a partition nobody writes until the next takeover, that one
        # reads this send back as a deposed owner's and sends it all again
        batch.note_outputs_from(partition)
        await batch.flush()

    def publish(
        self,
        batch: Batch,
        partition: int,
        tenant_id: str,
        now: datetime,
        partials: dict[str, Any] | None = None,
    ) -> bool:
        """Publish what changed in the tenant's windows; fire the thresholds it crossed
        (`partials`: the tenant's stored partials when the caller has just read them).

        Whether count records went out."""
        self._touch(partition, tenant_id)
        changed, current = self._publish(batch, partition, tenant_id, now, partials)
        if current is not None:
            self._settle(batch, partition, tenant_id, current)
        return changed

    def _publish(
        self,
        batch: Batch,
        partition: int,
        tenant_id: str,
        now: datetime,
        partials: dict[str, Any] | None = None,
    ) -> tuple[bool, Window | None]:
        """`publish`; and the current window if the publication went all the way (counts and
        thresholds), else None."""
        stored_license = batch.get(keys.TENANT_STATE, partition, keys.tenant_license(tenant_id))
        cut = cut_of(stored_license)
        if partials is None:
            partials = stored_partials(batch, partition, tenant_id)
        licensed = stored_license is not None
        if not publication_ready(partials, cut, self.learner_partitions, licensed):
            return False, None  # a re-cut is under way: the last exact records stand
        pub_key = keys.published(tenant_id)
        pub = batch.get(keys.TENANT_STATE, partition, pub_key) or {"cut": None, "windows": {}}
        # a new license (limit, thresholds, licensed flag or cut): every record is written again
        content = _published_license(stored_license["license"] if stored_license else None)
        republish = pub["cut"] is not None and pub.get("license") != content
        sums = sum_partials(partials.values(), cut)
        license_, is_licensed = license_from(tenant_id, stored_license)
        # a tenant with no license and no attempt (a license tombstone, also of a tenant never
        # seen; a deletion of an unlicensed tenant's last attempt) is no tenant: no records
        exists = is_licensed or sums.total > 0
        plan = plan_publication(cut, pub["windows"], sums, now, republish=republish, exists=exists)
        published = plan.published if plan.changed else pub["windows"]
        if plan.changed:
            # a window published again (a license changed back before a tick confirmed its
            # tombstone) is no longer gone: a takeover would send its tombstone after its count
            gone = sorted((set(pub.get("gone", [])) | set(plan.tombstones)) - set(plan.published))
            batch.put(
                keys.TENANT_STATE,
                partition,
                pub_key,
                {"cut": cut.id, "license": content, "windows": plan.published, "gone": gone},
            )
            self._emit_counts(
                batch,
                partition,
                tenant_id,
                plan.updates,
                plan.tombstones,
                license_,
                is_licensed,
                now,
            )
        # Every published window is held against its thresholds every time, not only the ones
        # that changed: the threshold state then follows the counts whatever a crash left half
        # written (counts durable, thresholds not), and a crossing is never numbered twice.
        # While a physical deletion is open, the evaluation waits for its end (its last part's
        # report publishes again): a crossing is mailed with the count the deletion left.
        if self.deletions.holds_thresholds(batch, partition, tenant_id, now):
            return plan.changed, None
        windows = {
            start: window
            for start in published
            if (window := window_starting(cut, date.fromisoformat(start))) is not None
        }
        self.check_thresholds(batch, partition, tenant_id, license_, published, windows, now)
        return plan.changed, window_of(cut, now)

    def _emit_counts(
        self,
        batch: Batch,
        partition: int,
        tenant_id: str,
        updates: Sequence[CountUpdate],
        tombstones: Sequence[str],
        license_: License,
        licensed: bool,
        now: datetime,
    ) -> None:
        for update in updates:
            record = count_record(tenant_id, update, license_.learner_limit, licensed, now)
            key = keys.count_record(tenant_id, update.window.start.isoformat())
            batch.emit(topics.ACTIVE_LEARNER_COUNTS, key, encode(record), partition)
        for start in tombstones:
            batch.emit(
                topics.ACTIVE_LEARNER_COUNTS, keys.count_record(tenant_id, start), None, partition
            )
        updated, removed = len(updates), len(tombstones)
        batch.on_durable(lambda: _count_metrics(updated, removed))

    def check_thresholds(
        self,
        batch: Batch,
        partition: int,
        tenant_id: str,
        license_: License,
        published: dict[str, list[int]],
        windows: dict[str, Window],
        now: datetime,
    ) -> None:
        """Fire `up`/`down` events for windows whose count is on the other side of a threshold
        than their state says (a new limit or threshold list fires what is now crossed, once)."""
        if license_.learner_limit is None:
            return  # nothing fires without a limit, and the state stays as it is
        records = self._threshold_records(batch, partition, tenant_id, windows)
        counts = {start: published[start][0] for start in windows if start in published}
        # the lists to store: the new events' lists, and those of an earlier version's records
        lists: dict[str, list[str]] = {}
        stored: dict[str, dict[str, Any]] = {}
        for start, record in records.items():
            stored[start], earlier = named_lists(record)
            lists.update(earlier)
        while True:
            state, crossings = evaluate(
                tenant_id, stored, counts, license_.learner_limit, license_.thresholds
            )
            events = [
                _crossing_event(tenant_id, crossing, windows[crossing.window], license_, now)
                for crossing in crossings
            ]
            # A crash may land events not yet confirmed sent without the window record they
            # belong to (they go first: `keys.CHANGELOG_ORDER`), and a replay that sees later
            # state need not compute them again: a crossing whose number such an event holds
            # with other content continues after it (a number is never used twice).
            if not _after_pending(batch, partition, tenant_id, stored, lists, state, events):
                break
        for crossing, event in zip(crossings, events, strict=True):
            entry = state[crossing.window][str(crossing.pct)]
            entry["event"] = kept_event(event)
            lists[entry["event"]["notify"]] = list(license_.notify)
            pending = keys.pending_threshold_event(
                tenant_id, crossing.window, crossing.pct, entry["crossings"]
            )
            batch.put(keys.TENANT_STATE, partition, pending, event)
            batch.emit(topics.THRESHOLD_EVENTS, tenant_id.encode(), encode(event), partition)
            batch.on_durable(
                metrics.threshold_events_total.labels(tenant_id, crossing.direction).inc
            )
        for start, record in records.items():
            if state[start] != record["pcts"]:
                _put_window_record(batch, partition, tenant_id, start, state[start], lists)

    @staticmethod
    def _threshold_records(
        batch: Batch, partition: int, tenant_id: str, windows: dict[str, Window]
    ) -> dict[str, dict[str, Any]]:
        """The stored threshold record of each of these windows (an older version's one record
        of the tenant is split into them first)."""
        _split_legacy(batch, partition, tenant_id)
        empty: dict[str, Any] = {"notify": [], "pcts": {}}
        # one multi-get: a tick evaluates every window of every tenant (10,000 tenants of 24
        # windows: 240,000 records a tick)
        wanted = [keys.window_thresholds(tenant_id, start) for start in windows]
        stored = batch.get_many(keys.TENANT_STATE, partition, wanted)
        return {start: record or empty for start, record in zip(windows, stored, strict=True)}

    # -- a deposed owner's records in this owner's outputs ----------------------------------------
    def repair_outputs(
        self, batch: Batch, topic: str, partition: int, records: list[LogRecord]
    ) -> None:
        """Send the current truth of what a deposed owner's late records are about, so that the
        last record of every key (and every window and threshold) is this owner's again. Its
        changelog records come here too: a record of what it published names count records
        that may be out (`_answer_publications`)."""
        now = self.clock()
        resent: set[bytes] = set()  # receipts sent again in this pass (and scans), by key
        # count records and threshold events answered in this pass, each once: a takeover may
        # read a whole flush of the last owner's records of the same keys
        answered: set[tuple[str, ...]] = set()
        for record in records:
            if topic == topics.TENANT_STATE_CHANGELOG:
                _keep_list(batch, partition, record)
                self._answer_publications(batch, partition, record, now)
            elif topic == topics.ACTIVE_LEARNER_COUNTS and record.key is not None:
                tenant_id, _, start = record.key.decode().rpartition("/")
                if ("count", tenant_id, start) not in answered:
                    answered.add(("count", tenant_id, start))
                    self._resend_count(batch, partition, tenant_id, start, now)
            elif record.value is not None:
                value = orjson.loads(record.value)
                tenant_id = value.get("tenant_id", "")
                if topic == topics.THRESHOLD_EVENTS:
                    about = (
                        "event",
                        str(tenant_id),
                        str((value.get("window") or {}).get("start")),
                        str(value.get("threshold_pct")),
                    )
                    if about not in answered:
                        answered.add(about)
                        self._resend_event(batch, partition, tenant_id, value)
                elif topic == topics.DELETION_RECEIPTS:
                    self._resend_receipts(batch, partition, tenant_id, value, resent)

    def _answer_publications(
        self, batch: Batch, partition: int, record: LogRecord, now: datetime
    ) -> None:
        """A deposed owner's record of what it published (its key is written again already):
        its count records may be out, also ones sent before this owner's lineage began, so
        each window it names gets this owner's truth (a tombstone where this owner has none)."""
        if record.key is None or not record.key.startswith(keys.PUBLISHED) or not record.value:
            return
        theirs = orjson.loads(record.value)
        tenant_id = keys.tenant_of_published(record.key)
        for start in sorted({*(theirs.get("windows") or {}), *(theirs.get("gone") or [])}):
            self._resend_count(batch, partition, tenant_id, start, now, tombstone_unknown=True)

    def _resend_count(
        self,
        batch: Batch,
        partition: int,
        tenant_id: str,
        start: str,
        now: datetime,
        tombstone_unknown: bool = False,
    ) -> None:
        pub = batch.get(keys.TENANT_STATE, partition, keys.published(tenant_id))
        if pub is None and not tombstone_unknown:
            return  # nothing published here yet: this owner publishes it when it gets there
        if pub is None:
            pub = {"windows": {}}
        counted = pub["windows"].get(start)
        if counted is None:  # not a window of what this owner published: no record
            batch.emit(
                topics.ACTIVE_LEARNER_COUNTS, keys.count_record(tenant_id, start), None, partition
            )
            return
        window = window_starting(Cut.from_id(pub["cut"]), date.fromisoformat(start))
        if window is None:
            return
        license_, licensed = license_from(tenant_id, {"license": pub.get("license")})
        update = CountUpdate(window, counted[0], counted[1])
        self._emit_counts(batch, partition, tenant_id, [update], [], license_, licensed, now)

    def _resend_event(
        self, batch: Batch, partition: int, tenant_id: str, event: dict[str, Any]
    ) -> None:
        start = (event.get("window") or {}).get("start")
        pct = str(event.get("threshold_pct"))
        if not isinstance(start, str) or "/" in start:
            return
        record = batch.get(keys.TENANT_STATE, partition, keys.window_thresholds(tenant_id, start))
        if record is not None:
            entry = record["pcts"].get(pct)
        else:
            legacy = batch.get(keys.TENANT_STATE, partition, keys.thresholds(tenant_id)) or {}
            entry = legacy.get("windows", {}).get(start, {}).get(pct)
        # a later crossing not yet confirmed sent is the threshold's last event, not the one
        # the record keeps (as at a takeover, `take_over_outputs`): answering a late copy of
        # it with the earlier one would put that last
        later = _latest_pending(batch, partition, tenant_id, start, pct)
        if later is not None and (not entry or later[0] > entry.get("crossings", 0)):
            batch.emit(topics.THRESHOLD_EVENTS, tenant_id.encode(), encode(later[1]), partition)
        elif entry and entry.get("event") and record is not None:
            kept = entry["event"]
            stored_list = _stored_lists(batch, partition, tenant_id)
            event = event_record(tenant_id, kept, event_notify(record, kept, stored_list))
            batch.emit(topics.THRESHOLD_EVENTS, tenant_id.encode(), encode(event), partition)
        elif entry and entry.get("event"):  # an older version's one record of the tenant
            batch.emit(
                topics.THRESHOLD_EVENTS, tenant_id.encode(), encode(entry["event"]), partition
            )

    def _resend_receipts(
        self,
        batch: Batch,
        partition: int,
        tenant_id: str,
        late: dict[str, Any],
        resent: set[bytes],
    ) -> None:
        """The receipts this owner holds for the request id of a `late` receipt, each once a
        pass: the request's own, and of the other requests under its id, the one `late` is
        (found by its fingerprint) or, for a receipt that names no selector (an invalid
        request's), those that name none; an older version's, kept inside the request, all."""
        request_id = late.get("request_id")
        if not isinstance(request_id, str):
            return
        key = keys.deletion(tenant_id, request_id)
        stored = batch.get(keys.TENANT_STATE, partition, key)
        if stored is None:
            return
        answers: list[tuple[bytes, dict[str, Any] | None]] = [(key, stored_receipt(stored))]
        answers += [
            (key + b"/" + fingerprint.encode(), receipt)
            for fingerprint, receipt in (stored.get("conflicts") or {}).items()
        ]
        fingerprint = _fingerprint_of(late)
        prefix = keys.deletion_conflicts(tenant_id, request_id)
        if fingerprint is not None:
            kept = keys.deletion_conflict(tenant_id, request_id, fingerprint)
            answers.append((kept, batch.get(keys.TENANT_STATE, partition, kept)))
        elif late.get("error") and prefix not in resent:
            resent.add(prefix)  # read once a pass: many rows, each up to a selector's size
            answers += [
                (kept, receipt)
                for kept, receipt in _scan_all(batch, partition, prefix)
                if receipt.get("selector") is None
            ]
        for answer_key, receipt in answers:
            if receipt is not None and answer_key not in resent:
                resent.add(answer_key)
                self.deletions.emit_receipt(batch, partition, receipt)


def _latest_pending(
    batch: Batch, partition: int, tenant_id: str, start: str, pct: str
) -> tuple[int, Any] | None:
    """(crossing number, event) of the latest event of a window's threshold that is not yet
    confirmed sent, if any."""
    try:
        prefix = keys.pending_threshold_events(tenant_id, start, int(pct))
    except ValueError:
        return None
    pending = _scan_all(batch, partition, prefix)  # in the order of their crossings
    if not pending:
        return None
    key, event = pending[-1]
    return keys.pending_event_parts(key)[3], event


def _fingerprint_of(receipt: dict[str, Any]) -> str | None:
    """The fingerprint of the request a receipt answers, where it names its selector and time
    (a valid request's), as ingest computed it; None otherwise."""
    try:
        selector = Selector.from_json(receipt["selector"])
        requested_at = datetime.fromisoformat(receipt["requested_at"])
        return selector.fingerprint(receipt["mode"], requested_at)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _crossing_event(
    tenant_id: str, crossing: Crossing, window: Window, license_: License, now: datetime
) -> dict[str, Any]:
    return {
        "event_id": crossing.event_id,
        "tenant_id": tenant_id,
        "window": {
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
            "months": window.months,
        },
        "threshold_pct": crossing.pct,
        "threshold_learners": crossing.learners,
        "direction": crossing.direction,
        "active_learners": crossing.active,
        "learner_limit": license_.learner_limit,
        "notify": list(license_.notify),
        "occurred_at": now.isoformat(),
    }


def _after_pending(
    batch: Batch,
    partition: int,
    tenant_id: str,
    stored: dict[str, dict[str, Any]],
    lists: dict[str, list[str]],
    state: dict[str, dict[str, dict[str, Any]]],
    events: list[dict[str, Any]],
) -> bool:
    """Move each threshold whose new event's number a pending event of other content holds
    past the pending events it lacks (`stored` and `lists` are updated); whether any moved.
    (One read per crossing: crossings are rare, a scan per publication is not.)"""
    moved = False
    for event in events:
        start, pct = event["window"]["start"], event["threshold_pct"]
        number = state[start][str(pct)]["crossings"]
        held = batch.get(
            keys.TENANT_STATE,
            partition,
            keys.pending_threshold_event(tenant_id, start, pct, number),
        )
        if held is None or held == event:
            continue  # a new crossing, or the one a replay computes again
        stored[start] = {**stored.get(start, {})}
        _take_pending(batch, partition, tenant_id, stored[start], lists, start, pct, number)
        moved = True
    return moved


def _take_pending(
    batch: Batch,
    partition: int,
    tenant_id: str,
    pcts: dict[str, dict[str, Any]],
    lists: dict[str, list[str]],
    start: str,
    pct: int,
    number: int,
) -> bool:
    """Advance a threshold's state in `pcts` through the pending events numbered `number` on
    (what a crash landed without its window record); whether there was one."""
    found = False
    while True:
        key = keys.pending_threshold_event(tenant_id, start, pct, number)
        event = batch.get(keys.TENANT_STATE, partition, key)
        if event is None:
            return found
        found = True
        kept = kept_event(event)
        lists[kept["notify"]] = list(event["notify"])
        pcts[str(pct)] = {"above": event["direction"] == "up", "crossings": number, "event": kept}
        number += 1


def _records_past_pending(
    batch: Batch, partition: int, pending: list[tuple[bytes, dict[str, Any]]]
) -> None:
    """Before pending events are forgotten, move each window record a crash left behind them
    past them (they were sent: a later crossing must not take their numbers again)."""
    by_window: dict[tuple[str, str], set[int]] = {}
    for key, _ in pending:
        tenant_id, start, pct, _crossing = keys.pending_event_parts(key)
        by_window.setdefault((tenant_id, start), set()).add(pct)
    for (tenant_id, start), pcts in sorted(by_window.items()):
        # (an older version's record left beside them: split first, as an evaluation would;
        # skipped, the events were forgotten with the record behind them)
        _split_legacy(batch, partition, tenant_id)
        key = keys.window_thresholds(tenant_id, start)
        record = batch.get(keys.TENANT_STATE, partition, key) or {"pcts": {}}
        stored, lists = named_lists(record)
        moved = {**stored}
        for pct in sorted(pcts):
            number = int(moved.get(str(pct), {}).get("crossings", 0)) + 1
            _take_pending(batch, partition, tenant_id, moved, lists, start, pct, number)
        if moved != record["pcts"]:
            _put_window_record(batch, partition, tenant_id, start, moved, lists)


def _split_legacy(batch: Batch, partition: int, tenant_id: str) -> None:
    """Split an older version's one record of the tenant into window records and pending
    events, and delete it (last: `keys.CHANGELOG_ORDER`). A crash may have landed an earlier
    split's window records, and later crossings in them, but not that deletion: a window
    record this version wrote is never older than the older record, so each threshold keeps
    the state with the most crossings (split over them, the crossings were forgotten and
    their numbers used again: tests/stages/test_threshold_crash_review.py)."""
    legacy_key = keys.thresholds(tenant_id)
    legacy = batch.get(keys.TENANT_STATE, partition, legacy_key)
    if legacy is None:
        return
    records, lists, pending = split_legacy(legacy)
    for start, record in records.items():
        pcts = record["pcts"]
        current = batch.get(keys.TENANT_STATE, partition, keys.window_thresholds(tenant_id, start))
        if current is not None:
            mine, earlier = named_lists(current)
            lists.update(earlier)
            pcts = {**pcts}
            for threshold, entry in mine.items():
                theirs = pcts.get(threshold, {})
                if int(entry.get("crossings", 0)) >= int(theirs.get("crossings", 0)):
                    pcts[threshold] = entry
        _put_window_record(batch, partition, tenant_id, start, pcts, lists)
    for (start, pct), events in pending.items():
        for crossing, event in events:
            key = keys.pending_threshold_event(tenant_id, start, pct, crossing)
            if batch.get(keys.TENANT_STATE, partition, key) is None:
                batch.put(keys.TENANT_STATE, partition, key, event)
    batch.delete(keys.TENANT_STATE, partition, legacy_key)


def _put_window_record(
    batch: Batch,
    partition: int,
    tenant_id: str,
    start: str,
    pcts: dict[str, dict[str, Any]],
    lists: dict[str, list[str]],
) -> None:
    """Write a window's threshold record and the lists it names that are new here (the lists
    reach the changelog first: `keys.CHANGELOG_ORDER`)."""
    for name in names_used(pcts):
        if name in lists:
            key = keys.threshold_notify(tenant_id, name)
            batch.put(keys.TENANT_STATE, partition, key, lists[name])
    key = keys.window_thresholds(tenant_id, start)
    batch.put(keys.TENANT_STATE, partition, key, {"pcts": pcts})


def _keep_list(batch: Batch, partition: int, record: LogRecord) -> None:
    """A deposed owner's record of a `notify` list stays (its key was just written again as a
    tombstone where this owner lacks it): a list's name is a hash of its content, so the record
    is right whatever its epoch, and a restore from the changelog's start may keep the deposed
    owner's window record that names it (both landed before this owner's takeover record).
    Tombstoned, a crash landing only the tombstone (or Kafka's cleaner removing this owner's
    own record of the list) left every later restore a record naming a list it lacks, and
    every takeover failed on it (tests/stages/test_threshold_lists_review.py)."""
    if record.key is None or not record.key.startswith(keys.THRESHOLD_NOTIFY) or not record.value:
        return
    notify = orjson.loads(record.value)
    if isinstance(notify, list) and notify_name(notify) == keys.threshold_notify_name(record.key):
        batch.put(keys.TENANT_STATE, partition, record.key, notify)


def _stored_lists(batch: Batch, partition: int, tenant_id: str) -> Callable[[str], list[str]]:
    """How the lists a tenant's window records name are read (`last_events`)."""

    def stored_list(name: str) -> list[str]:
        notify = batch.get(keys.TENANT_STATE, partition, keys.threshold_notify(tenant_id, name))
        if notify is None:  # a record is written after its lists, and they are never deleted
            raise LookupError(f"{tenant_id}'s threshold state names a list it lacks: {name}")
        return list(notify)

    return stored_list


def _published_license(content: dict[str, Any] | None) -> dict[str, Any] | None:
    """A license as `pub/{tenant}` keeps it beside the published windows: without its
    `webhooks`, which no count record shows and which may take most of a record on their own
    (no cap but Kafka's record limit): whole, a license that fitted its own records passed the
    limit beside a century of monthly windows (tests/stages/test_published_record_size.py).
    (Kept as an empty list: a record written by an older version of a license without
    webhooks stays equal; one with webhooks has its tenant published again, once.)"""
    if content is None or not content.get("webhooks"):
        return content
    return {**content, "webhooks": []}


def stored_partials(batch: Batch, partition: int, tenant_id: str) -> dict[str, Any]:
    """The latest partial count of every learner partition that reported for the tenant."""
    own, legacy = _read_partials(batch, partition, tenant_id)
    return merge_partials(legacy, own) if legacy else own


def _read_partials(
    batch: Batch, partition: int, tenant_id: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A tenant's partials under their own keys, and an older version's one record of them (a
    partition's own key, written later, is never older than its entry there)."""
    own = {
        keys.learner_partition_of_partial(key): partial
        for key, partial in _scan_all(batch, partition, keys.partials_of(tenant_id))
    }
    return own, batch.get(keys.TENANT_STATE, partition, keys.legacy_partials(tenant_id))


def _scan_all(batch: Batch, partition: int, prefix: bytes) -> list[tuple[bytes, Any]]:
    return scan_all(batch, keys.TENANT_STATE, partition, prefix)


def _observe_latency(oldest_ms: int) -> Callable[[], None]:
    def observe() -> None:
        metrics.count_latency.observe(max(0.0, time.time() - oldest_ms / 1000))

    return observe


def _count_metrics(updated: int, removed: int) -> None:
    if updated:
        metrics.count_records_total.labels("update").inc(updated)
    if removed:
        metrics.count_records_total.labels("tombstone").inc(removed)
