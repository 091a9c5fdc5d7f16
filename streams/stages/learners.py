"""Learner stage: attempts, window membership and partial counts, one partition per learner.

Every learner's attempts live in one partition, so distinct counting is local: a partition knows
exactly how many of a tenant's learners it holds per window. It reports those numbers as absolute
partial counts to the tenant stage, coalesced: a timer asks `partial_commands()` for what changed
(timers send; only the stage's handlers write tables).

Its tables and keys are listed in streams/stages/keys.py. The counters in memory are derived
from the tables, change only once a change is durable, and are rebuilt at every takeover.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas import topics
from streams.domain.dead_letters import dead_letter
from streams.domain.dead_letters import encode as encode_json
from streams.domain.learners import (
    BatchResult,
    LearnerReads,
    PartitionCounters,
    Rejection,
    TenantCounts,
    TrackedAttempt,
    apply_attempts,
    tally_member,
)
from streams.domain.licenses import cut_of
from streams.domain.partitioning import tenant_partition
from streams.domain.sources import superseded
from streams.domain.tallies import (
    Membership,
    MonthOf,
    Summary,
    Tallies,
    month_of_record,
    months_in,
    read_membership,
    stored_membership,
    summarised,
    widen,
)
from streams.domain.windows import Cut, window_of
from streams.stages import commands, ingest, keys, metrics
from streams.stages.learner_deletions import apply_part
from streams.stages.markers import erasures_reader, remember_conflicts
from streams.stages.store import (
    LEARNER,
    MAX_RECORD_BYTES,
    Batch,
    Epoch,
    Fenced,
    Log,
    LogRecord,
    Record,
    RecordTooLarge,
    chunks_by_size,
    scan_all,
)

log = logging.getLogger(__name__)

SCAN_CHUNK = 5_000
# partial counts are cut into commands of about this size (far below Kafka's 1 MiB)
PARTIALS_MAX_BYTES = 256 * 1024
# a tenant's partial counts larger than this go one learner partition a command part
TENANT_APART_BYTES = MAX_RECORD_BYTES // 2

RawReader = Callable[[str, int, int], Awaitable[bytes | None]]
# the values of the learner-commands records of a partition that its new owner will apply (from
# the consumer group's committed offset to the end): what a takeover's replay does in order; in
# chunks, so that a long backlog never has to fit in memory at once
Backlog = Callable[[int], AsyncIterator[list[bytes | None]]]


async def no_raw(topic: str, partition: int, offset: int) -> bytes | None:
    return None


async def no_backlog(partition: int) -> AsyncIterator[list[bytes | None]]:
    return
    yield


class LearnerStage:
    """The learner stage's handlers, and the derived counters of the partitions it owns."""

    def __init__(
        self,
        partitions: int,
        read_raw: RawReader = no_raw,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        backlog: Backlog = no_backlog,
    ) -> None:
        self.partitions = partitions  # of tenant-commands (for partial counts and reports)
        self.read_raw = read_raw
        self.backlog = backlog
        self.clock = clock
        self.counters = PartitionCounters()
        # A rebuilt partition reports nothing until it has applied every command its log held
        # at the takeover: its state may be half-written by a crash, and the replay of those
        # commands is what heals it. Partition -> offset to reach; last offset applied.
        self.catch_up: dict[int, int] = {}
        self.applied: dict[int, int] = {}
        # The hold starts at the rebuild: the offset to reach is known only after a flush and a
        # read (`hold_until_replayed`), and the partial-count timer runs during those awaits.
        # Partition -> the epoch of the takeover that rebuilt it (a superseded takeover's end
        # must not release a newer one's rebuild).
        self.rebuilding: dict[int, Epoch] = {}

    async def handle_record(self, batch: Batch, record: Record) -> None:
        await self.handle(batch, record.value, record.partition, record.offset)

    async def handle(self, batch: Batch, value: bytes | None, partition: int, offset: int) -> None:
        batch.on_durable(lambda: self._applied(partition, offset))
        match commands.decode(value):
            case commands.Attempts() as command:
                await self.on_attempts(batch, command, partition, offset)
            case commands.License() as command:
                self.on_license(batch, command, partition, offset)
            case commands.Groups() as command:
                self.on_groups(batch, command, partition)
            case commands.DeletionPart() as command:
                report = await apply_part(self.counters, batch, command, partition, offset)
                tenant_id = command.request["tenant_id"]
                after = self._counts_after_part(command, partition)
                if after is not None:
                    # inside the report: a worker of an older version reads past it
                    report = {**report, commands.PARTIAL_AFTER: after}
                elif (
                    command.request["mode"] == "physical"
                    and self.catching_up(partition)
                    and self.counters.get(partition, tenant_id) is not None
                ):
                    # the owner's epoch: only its counts (sent once caught up) or a later
                    # owner's include the part; an older owner's late count does not. (A
                    # partition that holds none of the tenant has never counted it, and will
                    # send no count of it to wait for: its report says nothing.)
                    epoch = self.counters.epochs.get(partition, (0, 0))
                    report = {**report, commands.CATCHING_UP: list(epoch)}
                reply = commands.PartReport(
                    command.request, command.part, command.parts, partition, report
                )
                batch.emit(
                    topics.TENANT_COMMANDS,
                    tenant_id.encode(),
                    commands.encode(reply),
                    tenant_partition(tenant_id, self.partitions),
                )
            case commands.Check():
                await batch.check_lineage(LEARNER, [partition])
            case _:
                log.error("learner-commands: not a command at %d/%d", partition, offset)
                metrics.stage_errors_total.labels("learners").inc()

    def _counts_after_part(self, command: commands.DeletionPart, partition: int) -> Any:
        """The tenant's partial count here once a physical part is applied (every chunk of it
        is durable: the counters are up to date). None while the partition catches up after a
        takeover (its counters may not be exact yet) or when it holds none of the tenant."""
        if command.request["mode"] != "physical" or self.catching_up(partition):
            return None
        counts = self.counters.get(partition, command.request["tenant_id"])
        return None if counts is None else self._partial(partition, counts)

    def _partial(self, partition: int, counts: TenantCounts) -> dict[str, Any]:
        return {
            "epoch": list(self.counters.epochs.get(partition, (0, 0))),
            "seq": counts.seq,
            "cut": counts.cut_id,
            "windows": dict(counts.windows),
            "total": counts.total,
        }

    @staticmethod
    def split(record: Record) -> list[Record]:
        """The parts of a command that failed (streams/stages/loop.py): each launch of an
        `Attempts` command on its own, at the command's position, so that a launch the stage
        cannot apply (a bug) is dead-lettered alone and the others of the command (many
        tenants' learners) are counted. Other commands have no parts (none: tried whole)."""
        command = commands.decode(record.value)
        if not isinstance(command, commands.Attempts):
            return []
        return [
            dataclasses.replace(
                record, value=commands.encode(commands.Attempts(command.topic, [row]))
            )
            for row in command.attempts
        ]

    async def give_up(self, batch: Batch, record: Record, exc: BaseException) -> None:
        """A command that kept failing: each launch of an `Attempts` command is dead-lettered
        with its own position and its original value (a large launch, which travels by
        reference, is read back: a review found its dead letter without it); a deletion part
        reports the failure (its receipt says so)."""
        command = commands.decode(record.value)
        detail = f"the service could not apply this launch ({type(exc).__name__}: {exc})"
        if isinstance(command, commands.Attempts):
            for row in command.attempts:
                rejection = Rejection(TrackedAttempt(*row), "invalid", detail)
                await self._dead_letter(batch, command.topic, rejection, last_resort=True)
            return
        if isinstance(command, commands.DeletionPart):
            tenant_id = command.request["tenant_id"]
            # its tries may have changed the counts: reported by the timer from now on
            self.counters.release_reports(record.partition, tenant_id)
            failed = {
                "attempts_affected": 0,
                "learners_affected": 0,
                "losses": {},  # nothing removed that the receipt could name
                "counts": {},
                "error": f"part {command.part} failed ({type(exc).__name__})",
            }
            reply = commands.PartReport(
                command.request, command.part, command.parts, record.partition, failed
            )
            batch.emit(
                topics.TENANT_COMMANDS,
                tenant_id.encode(),
                commands.encode(reply),
                tenant_partition(tenant_id, self.partitions),
            )
        ingest.give_up(batch, record, exc, self.clock())

    # -- attempts ---------------------------------------------------------------------------
    async def on_attempts(
        self, batch: Batch, command: commands.Attempts, partition: int, offset: int
    ) -> None:
        result = _apply_attempts(
            batch, partition, [TrackedAttempt(*row) for row in command.attempts]
        )
        for rejection in result.rejected:
            await self._dead_letter(batch, command.topic, rejection)
        self._count_when_durable(batch, partition, offset, result)

    def _count_when_durable(
        self, batch: Batch, partition: int, offset: int, result: BatchResult
    ) -> None:
        outcomes = dict(result.outcomes)
        cuts = {tenant_id: cut.id for tenant_id, cut in result.cuts.items()}
        changes, new_tenants = result.changes, result.new_tenants

        def counted() -> None:
            for tenant_id, change in changes.items():
                self.counters.apply(partition, tenant_id, cuts[tenant_id], change, offset)
            for tenant_id in new_tenants:
                self.counters.touch(partition, tenant_id, cuts[tenant_id], offset)
            for outcome, n in outcomes.items():
                metrics.attempts_total.labels(outcome).inc(n)

        batch.on_durable(counted)

    async def _dead_letter(
        self, batch: Batch, topic: str, rejection: Rejection, last_resort: bool = False
    ) -> None:
        """Dead-letter a launch with its original value. A large one is read back from its
        position: a reader that raises has the command tried again (the read may pass), and
        when it is given up (`last_resort`) the launch is dead-lettered without it, and says
        so; as it does when the reader answers None (the worker's reader answers None for any
        record it cannot read, at once: streams/worker/raw_fetch.py)."""
        item = rejection.item
        detail = rejection.detail
        if item.raw is not None:
            raw: bytes | None = item.raw.encode("utf-8")
        else:  # a large launch travels by reference: read it back from its position
            try:
                raw = await self.read_raw(topic, item.source_partition, item.source_offset)
            except Exception:
                if not last_resort:
                    raise
                log.exception(
                    "learners: reading back the launch at %s/%d@%d failed",
                    topic,
                    item.source_partition,
                    item.source_offset,
                )
                raw = None
            if raw is None:
                detail += " (the original record could not be read back)"
        record = dead_letter(
            rejection.reason,
            detail,
            raw,
            topic,
            item.source_partition,
            item.source_offset,
            self.clock(),
        )
        batch.emit(topics.DEAD_LETTERS, item.tenant_id.encode(), encode_json(record))
        batch.on_durable(metrics.dead_letters_total.labels(topics.LAUNCHES, rejection.reason).inc)

    # -- teams and roles ----------------------------------------------------------------------
    def on_groups(self, batch: Batch, command: commands.Groups, partition: int) -> None:
        """Store learners' teams and roles (they never change counts)."""
        for tenant_id, learner_id, teams, roles, *source in command.groups:
            key = keys.groups(tenant_id, learner_id)
            stored = batch.get(keys.LEARNER_GROUPS, partition, key)
            if stored is not None and superseded(stored.get("source"), source):
                continue  # an older record than the one applied (a late or replayed send)
            # a tombstone is kept as "no groups" with its position, so that an older record
            # arriving later cannot bring the groups back
            value = {"teams": teams or [], "roles": roles or [], "source": source or None}
            batch.put(keys.LEARNER_GROUPS, partition, key, value)

    # -- licenses ---------------------------------------------------------------------------
    def on_license(
        self, batch: Batch, command: commands.License, partition: int, offset: int
    ) -> None:
        """Store the tenant's license here; re-cut its learners when the windows change.

        A replay of the license this partition already has re-cuts too: that rewrites
        memberships a crash may have left half-written.
        """
        tenant_id = command.tenant_id
        key = keys.license_entry(tenant_id)
        stored = batch.get(keys.LEARNER_STATE, partition, key)
        if stored is not None and superseded(stored.get("source"), command.source):
            return  # an older license record than the one applied (a late or replayed send)
        incoming = {"license": command.license, "source": command.source}
        old_cut, new_cut = cut_of(stored), cut_of(incoming)
        batch.put(keys.LEARNER_STATE, partition, key, incoming)
        if stored is not None and new_cut == old_cut and stored.get("license") != command.license:
            # a new limit or new thresholds: nothing to re-cut; the tenant stage re-evaluates
            batch.on_durable(lambda: self.counters.touch(partition, tenant_id, new_cut.id, offset))
            return
        counts, tallies = self.recut(batch, partition, tenant_id, new_cut)
        counts.seq = offset
        batch.on_durable(lambda: self.counters.replace(partition, tenant_id, counts, tallies))

    def recut(
        self, batch: Batch, partition: int, tenant_id: str, cut: Cut
    ) -> tuple[TenantCounts, Tallies]:
        """The tenant's memberships in this partition recomputed from its attempts under `cut`,
        with the counts and report tallies they make."""
        prefix = keys.attempts_of_tenant(tenant_id)
        learners: dict[str, dict[str, Summary]] = {}
        tallies = Tallies(self.counters.tracked_from.get(partition, 0.0))
        month_of = months_in(cut.timezone)
        after = None
        while True:
            rows = batch.scan(keys.ATTEMPTS, partition, prefix, after, SCAN_CHUNK)
            for _, record in rows:
                instant = datetime.fromisoformat(record["launched_at"])
                at = instant.timestamp()
                tallies.months[month_of(at)] += 1
                window = window_of(cut, instant).start.isoformat()
                widen(learners.setdefault(record["learner_id"], {}), window, at)
            if len(rows) < SCAN_CHUNK:
                break
            after = rows[-1][0]
        # memberships of learners without attempts (a drift, or a deletion a crash cut short) go
        for key, _ in _scan_all(
            batch, keys.LEARNER_STATE, partition, keys.memberships_of(tenant_id)
        ):
            if keys.parse_membership(key)[1] not in learners:
                batch.delete(keys.LEARNER_STATE, partition, key)
        counts = TenantCounts(cut_id=cut.id)
        for learner, membership in learners.items():
            batch.put(
                keys.LEARNER_STATE,
                partition,
                keys.membership(tenant_id, learner),
                stored_membership(dict(membership)),
            )
            counts.add_learner(membership)
            tally_member(tallies, dict(membership), cut)
        # (at INFO only with learners: 10,000 tenants' first licenses logged 120,000 lines of
        # "0 learners" over 12 partitions)
        log.log(
            logging.INFO if learners else logging.DEBUG,
            "re-cut a tenant in partition %d to %s: %d learners",
            partition,
            cut.id,
            len(learners),
        )
        return counts, tallies

    # -- takeover and partial counts -------------------------------------------------------------
    async def heal_marked(
        self,
        batch: Batch,
        table: str,
        partition: int,
        marked: Mapping[bytes, Sequence[LogRecord]],
    ) -> None:
        """Recompute the marked attempts and memberships of a partition just restored
        (`DurableBatch.repair_marked`, before it writes the marked keys again).

        A mark means the restore skipped a deposed owner's late record of the key. If Kafka's
        cleaner removed the rightful record before it (every worker stopped for longer than
        `min.compaction.lag.ms`), the restore kept nothing, and writing that nothing again
        would uncount the learner (seed 9981521). So an attempt the restore left without a
        record is the deposed owner's last record of it applied as a launch again (the
        erasure markers refuse one a physical deletion removed, as they refuse any repeat),
        and a membership is derived from the learner's attempts, as a re-cut derives it."""
        if table == keys.ATTEMPTS:
            lost = []
            for key, records in marked.items():
                last = records[-1] if records else None
                if last is None or last.value is None or batch.get(table, partition, key):
                    continue
                record = orjson.loads(last.value)
                lost.append(
                    TrackedAttempt(
                        record["tenant_id"],
                        record["learner_id"],
                        record["element_id"],
                        record["attempt_id"],
                        record["launched_at"],
                        -1,
                        -1,
                    )
                )
            lost_at_restore = list(lost)
            if lost:
                # A launch still in the partition's backlog is applied by the replay, in the
                # order of its commands: applied here, before them, a named deletion the
                # deposed owner applied before it would find it (and delete or hide it) on its
                # first run. Only a launch whose command is committed (it precedes the whole
                # backlog) can have lost its record for good.
                replayed = await self._left_to_the_replay(partition, lost)
                lost = [
                    item
                    for item in lost
                    if (item.attempt, item.element_id, item.launched_at) not in replayed
                ]
            if lost:
                result = _apply_attempts(batch, partition, lost)
                log.warning(
                    "learner partition %d: %d attempts a restore kept no record of were "
                    "applied again from a deposed owner's records (%d refused)",
                    partition,
                    len(result.attempts),
                    len(result.rejected),
                )
            # The memberships of the learners of lost attempts left unstored (left to the
            # replay, or refused) may still count them: derived from the attempts stored
            # instead, as marked memberships are, so that what the replay finds (a deletion
            # ahead of a repeat of a committed launch) is the learner as its attempts say.
            unstored = [
                item
                for item in lost_at_restore
                if batch.get(table, partition, keys.attempt(*item.attempt)) is None
            ]
            self._recompute_memberships(
                batch,
                partition,
                dict.fromkeys(keys.membership(i.tenant_id, i.learner_id) for i in unstored),
            )
            return
        if table != keys.LEARNER_STATE:
            return
        self._recompute_memberships(batch, partition, marked)

    def _recompute_memberships(
        self, batch: Batch, partition: int, memberships: Iterable[bytes]
    ) -> None:
        """Each membership key's value derived from its learner's stored attempts."""
        for key in memberships:
            if not key.startswith(keys.MEMBERSHIP):
                continue
            tenant_id, learner_id = keys.parse_membership(key)
            cut = cut_of(batch.get(keys.LEARNER_STATE, partition, keys.license_entry(tenant_id)))
            prefix = keys.attempts_of_learner(tenant_id, learner_id)
            rows = _scan_all(batch, keys.ATTEMPTS, partition, prefix)
            membership = summarised(
                cut, [datetime.fromisoformat(r["launched_at"]) for _, r in rows]
            )
            stored = read_membership(batch.get(keys.LEARNER_STATE, partition, key))
            if membership == stored:
                continue
            if membership.keys() != stored.keys():
                log.warning(
                    "learner partition %d: a restored membership's windows differed from its "
                    "attempts' (a deposed owner's late record); recomputed",
                    partition,
                )
            if membership:
                batch.put(keys.LEARNER_STATE, partition, key, stored_membership(dict(membership)))
            else:
                batch.delete(keys.LEARNER_STATE, partition, key)

    async def _left_to_the_replay(
        self, partition: int, lost: Sequence[TrackedAttempt]
    ) -> set[tuple[tuple[str, str, str], str, datetime]]:
        """The launches (attempt, element, instant) of `lost` attempts that the replay of the
        partition's backlog stores itself, as far as the backlog tells.

        - The first launch of an attempt in the backlog: if the lost record is that launch, the
          deposed owner stored it from the backlog, and the replay stores it again, in order.
        - A later launch of the attempt, after a physical deletion part that may cover it: the
          deletion may have erased the first launch for the deposed owner, which then stored
          this one.
        A lost record equal to a later launch only, with no such deletion ahead of it, is a
        committed launch (the first launch would otherwise have been stored, or judged against
        it): it is healed, so that the replay judges the first launch against it, as the
        rightful owner did (a conflict, not a new attempt). Left as it is: a committed launch
        repeated after a conflicting one and after a physical deletion part that may cover it
        (the replay stores the conflicting one); and a committed launch whose first repeat in
        the backlog follows a deletion: the replay's deletion finds no attempt (its receipt
        counts one less, and a named one requested before the launch lets the repeat be
        stored where it would have removed the attempt for good), while the learner's
        membership is derived from the attempts stored at the takeover (`heal_marked`), so
        the counts agree with the attempts."""
        wanted = {item.attempt for item in lost}
        tenants = {item.tenant_id for item in lost}
        first: dict[tuple[str, str, str], tuple[tuple[str, str, str], str, datetime]] = {}
        after_deletion: set[tuple[tuple[str, str, str], str, datetime]] = set()
        # what a physical deletion part met so far may erase (`_covered_by`)
        deleting: set[tuple[str, str | None, str | None]] = set()
        async for chunk in self.backlog(partition):
            for value in chunk:
                command = commands.decode(value)  # None for what is not a command
                if isinstance(command, commands.DeletionPart):
                    # only a physical part erases; a preview or a logical one stores nothing
                    request = command.request
                    if request.get("tenant_id") in tenants and request.get("mode") == "physical":
                        deleting.update(_covered_by(command))
                    continue
                if not isinstance(command, commands.Attempts):
                    continue
                try:  # the replay applies a command whole or gives it up whole: so does this
                    rows = [TrackedAttempt(*row) for row in command.attempts]
                    launches = [(row.attempt, row.element_id, row.launched_at) for row in rows]
                except (TypeError, ValueError):
                    continue
                for launch in launches:
                    if launch[0] not in wanted:
                        continue
                    if launch[0] not in first:
                        first[launch[0]] = launch
                    elif not deleting.isdisjoint(_coverings(launch[0])):
                        after_deletion.add(launch)
        return set(first.values()) | after_deletion

    def rebuild(self, batch: Batch, epochs: Mapping[int, Epoch]) -> None:
        """Recompute the counters of partitions just taken over, from their tables.

        `epochs` are the owner epochs of those partitions (streams/stages/batch.py: take_over):
        a rebuilt partition's reports win over every late report of its previous owner."""
        tracked_from = self.clock().timestamp()
        for partition, epoch in sorted(epochs.items()):
            started = time.monotonic()
            tenants, tallies = self._count_partition(batch, partition, tracked_from)
            self.counters.reset_partition(partition, epoch, tenants, tallies, tracked_from)
            self.rebuilding[partition] = epoch  # held until `hold_until_replayed` set its end
            log.info(
                "learner partition %d rebuilt (epoch %s): %d tenants, %d learners, %d attempts "
                "in %.2f s",
                partition,
                epoch,
                len(tenants),
                sum(counts.total for counts in tenants.values()),
                sum(sum(t.months.values()) for t in tallies.values()),
                time.monotonic() - started,
            )

    def _applied(self, partition: int, offset: int) -> None:
        if offset > self.applied.get(partition, -1):
            self.applied[partition] = offset
        if self.catch_up.get(partition, 0) <= offset + 1:
            self.catch_up.pop(partition, None)

    def catching_up(self, partition: int) -> bool:
        """Whether the partition's counters may still miss commands of its backlog: rebuilt at
        a takeover, and not yet caught up with the end its takeover read."""
        return partition in self.catch_up or partition in self.rebuilding

    def hold_until(self, partition: int, end_offset: int) -> None:
        """Report partition `partition` only once the command before `end_offset` is applied."""
        if end_offset > self.applied.get(partition, -1) + 1:
            # never lowered: a superseded takeover's hold must not shorten a newer one's
            self.catch_up[partition] = max(end_offset, self.catch_up.get(partition, 0))

    async def hold_until_replayed(
        self,
        batch: Batch,
        log_: Log,
        partitions: Sequence[int],
        overtaken: Callable[[], bool] = lambda: False,
    ) -> None:
        """After a takeover: hold the partitions' reports until their backlog is applied.

        A `Check` command is appended to each partition first, so that there is always a command
        to reach, however far the old owner had come. A partition's rebuild held it until then
        (`rebuilding`); a flush that fails leaves it held until the partitions are released (the
        takeover is given up, or the next one releases them first). A takeover that a later
        rebalance `overtaken` sets no hold (a newer takeover's partitions by then)."""
        rebuilt = {partition: self.rebuilding.get(partition) for partition in partitions}
        for partition in partitions:
            batch.emit(
                topics.LEARNER_COMMANDS, b"check", commands.encode(commands.Check()), partition
            )
        await batch.flush()
        for partition in partitions:
            end = await log_.end_offset(topics.LEARNER_COMMANDS, partition)
            if overtaken():
                return
            self.hold_until(partition, end)
            if self.rebuilding.get(partition) == rebuilt[partition]:
                self.rebuilding.pop(partition, None)

    def release(self, partitions: Sequence[int] | None = None) -> None:
        """Forget the counters of partitions this process no longer owns (all when None)."""
        keep = set() if partitions is None else set(self.counters.partitions()) - set(partitions)
        self.counters.drop_partitions(keep)
        for partition in list(self.catch_up):
            if partition not in keep:
                del self.catch_up[partition]
        for partition in list(self.applied):
            if partition not in keep:
                del self.applied[partition]
        for partition in list(self.rebuilding):
            if partition not in keep:
                del self.rebuilding[partition]

    def _count_partition(
        self, batch: Batch, partition: int, tracked_from: float
    ) -> tuple[dict[str, TenantCounts], dict[str, Tallies]]:
        """A partition's counts and report tallies, from its memberships and attempts."""
        tenants: dict[str, TenantCounts] = {}
        cuts: dict[str, Cut] = {}
        for key, value in _scan_all(batch, keys.LEARNER_STATE, partition, keys.LICENSE):
            tenant_id = keys.tenant_of_license_entry(key)
            cuts[tenant_id] = cut_of(value)
            tenants.setdefault(tenant_id, TenantCounts()).cut_id = cuts[tenant_id].id
        default = cut_of(None)  # memberships without a license entry: the default cut
        tallies: dict[str, Tallies] = {}

        def tallies_of(tenant_id: str) -> Tallies:
            found = tallies.get(tenant_id)
            if found is None:
                found = tallies[tenant_id] = Tallies(tracked_from)
            return found

        for key, value in _scan_chunks(batch, keys.LEARNER_STATE, partition, keys.MEMBERSHIP):
            tenant_id, _ = keys.parse_membership(key)
            membership: Membership = read_membership(value)
            tenants.setdefault(tenant_id, TenantCounts()).add_learner(membership)
            tally_member(tallies_of(tenant_id), membership, cuts.get(tenant_id, default))
        for counts in tenants.values():
            if not counts.cut_id:
                counts.cut_id = default.id
        # the attempts by local month (the advisor's attempts removed by a cut-off)
        month_of: dict[str, MonthOf] = {}
        for key, raw in _scan_chunks(batch, keys.ATTEMPTS, partition, b"", raw=True):
            if key.startswith(keys.REPAIR) or b"/" not in key:
                continue  # local bookkeeping (the fence, a restore's marks), not an attempt
            tenant_id = keys.parse_attempt(key)[0]
            months = month_of.get(tenant_id)
            if months is None:
                months = month_of[tenant_id] = months_in(cuts.get(tenant_id, default).timezone)
            tallies_of(tenant_id).months[month_of_record(raw, months)] += 1
        return tenants, tallies

    def partial_commands(self) -> list[tuple[int, bytes]]:
        """The dirty tenants' partial counts: (tenant partition, `Partials` command) pairs,
        each command below PARTIALS_MAX_BYTES (thousands of tenants fit in several)."""
        by_partition: dict[int, dict[str, dict[str, Any]]] = {}
        taken = self.counters.take_dirty(hold={*self.catch_up, *self.rebuilding})
        out: list[tuple[int, bytes]] = []
        try:
            for partition, tenant_id, counts in taken:
                target = tenant_partition(tenant_id, self.partitions)
                by_partition.setdefault(target, {}).setdefault(tenant_id, {})[str(partition)] = {
                    **self._partial(partition, counts),
                    "oldest_ms": counts.oldest_ms,
                }
            for target, tenants in sorted(by_partition.items()):
                sized: list[tuple[tuple[str, dict[str, Any]], int]] = []
                for item in tenants.items():
                    size = _partial_size(item)
                    if size <= TENANT_APART_BYTES:
                        sized.append((item, size))
                        continue
                    # a tenant of many learner partitions and windows (a large one, long kept,
                    # on a worker of hundreds of partitions) could pass Kafka's 1 MiB alone:
                    # its partitions go apart, as two workers' reports would
                    for learner_partition, part in item[1].items():
                        apart = (item[0], {learner_partition: part})
                        sized.append((apart, _partial_size(apart)))
                for chunk in chunks_by_size(sized, _second, PARTIALS_MAX_BYTES):
                    merged: dict[str, dict[str, Any]] = {}
                    for (tenant_id, parts), _ in chunk:
                        merged.setdefault(tenant_id, {}).update(parts)
                    out.append((target, commands.encode(commands.Partials(merged))))
            assert all(len(command) < MAX_RECORD_BYTES for _, command in out)
        except BaseException:
            # (a bug) the timer fails and says so (streams/worker/agents/timers.py); the
            # tenants stay due, as they were
            for partition, tenant_id, counts in taken:
                self.counters.untake(partition, tenant_id, counts.oldest_ms)
            raise
        return out

    def unsent(self, partials: Sequence[tuple[int, bytes]]) -> None:
        """`partial_commands` whose flush failed (a timer's failure the worker survives): their
        tenants are dirty again, so the next report sends their counts. Taken, they were clean,
        and without a crash no rebuild would report them: a window's count record stayed
        behind its counts until the tenant changed again."""
        for _, command in partials:
            decoded = commands.decode(command)
            assert isinstance(decoded, commands.Partials)
            for tenant_id, parts in decoded.tenants.items():
                for partition, partial in parts.items():
                    self.counters.untake(int(partition), tenant_id, partial.get("oldest_ms"))


def _nothing() -> None:
    pass


async def send_partials(
    stage: LearnerStage, new_batch: Callable[[], Batch], on_taken: Callable[[], None] = _nothing
) -> int:
    """Take the dirty tenants' partial counts (`partial_commands`; `on_taken` told when there
    are some) and send them to the tenant stage; returns the commands sent.

    Refused by Kafka for a record's size (a topic whose `max.message.bytes` is below what a
    flush packs), they are taken again (fresh: a newer report of a tenant may have gone out
    meanwhile, which the old one must not follow) and sent one tenant's learner partition a
    command, in flushes cut in two until Kafka takes each (the producer packs a flush's records
    into batches of up to 1 MiB, and the limit is the batch's): sent whole at every interval,
    they were refused for good, and the counts of every tenant in them stood still. Records of
    a refused flush may have landed: a report applied twice is a report. A failure but
    `Fenced` gives what was taken back to the counters (`unsent`): the next interval sends it
    (after `Fenced`, the next owner's takeover reports it)."""
    partials = stage.partial_commands()
    if not partials:
        return 0
    on_taken()
    try:
        try:
            await _flush_partials(new_batch(), partials)
            return len(partials)
        except RecordTooLarge as exc:
            refused = exc
        stage.unsent(partials)
        partials = []  # (taking them again gives back what it took if it fails)
        partials = stage.partial_commands()
        apart = partials_apart(partials)
        log.warning(
            "partial counts: %s; sending them again in %d commands, one tenant's learner "
            "partition each (check the topic's max.message.bytes)",
            refused,
            len(apart),
        )
        await _flush_in_halves(new_batch, apart)
        return len(apart)
    except Fenced:
        raise
    except BaseException:
        stage.unsent(partials)
        raise


async def _flush_in_halves(
    new_batch: Callable[[], Batch], partials: Sequence[tuple[int, bytes]]
) -> None:
    try:
        await _flush_partials(new_batch(), partials)
    except RecordTooLarge:
        if len(partials) < 2:
            raise  # one tenant's report of one partition: the next interval tries again
        half = len(partials) // 2
        await _flush_in_halves(new_batch, partials[:half])
        await _flush_in_halves(new_batch, partials[half:])


async def _flush_partials(batch: Batch, partials: Sequence[tuple[int, bytes]]) -> None:
    for partition, command in partials:
        batch.emit(topics.TENANT_COMMANDS, b"partials", command, partition)
    await batch.flush()


def partials_apart(partials: Sequence[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """The same reports, one (tenant, learner partition) a command."""
    out: list[tuple[int, bytes]] = []
    for target, command in partials:
        decoded = commands.decode(command)
        assert isinstance(decoded, commands.Partials)
        for tenant_id, parts in decoded.tenants.items():
            for partition, partial in parts.items():
                apart = commands.Partials({tenant_id: {partition: partial}})
                out.append((target, commands.encode(apart)))
    return out


def _second(pair: tuple[Any, int]) -> int:
    return pair[1]


def _partial_size(item: tuple[str, dict[str, Any]]) -> int:
    tenant_id, parts = item
    return len(orjson.dumps(parts)) + len(tenant_id) + 8


def _read(
    batch: Batch, table: str, partition: int, wanted: Mapping[Any, bytes], remember: bool = False
) -> dict[Any, Any]:
    values = batch.get_many(table, partition, list(wanted.values()), remember)
    return dict(zip(wanted, values, strict=True))


def _covered_by(part: commands.DeletionPart) -> list[tuple[str, str | None, str | None]]:
    """What a physical deletion part may erase, as (tenant, learner, attempt): None for any
    (`older_than`, teams and roles: who belongs to them is known only when it is applied)."""
    tenant_id, selector = part.request["tenant_id"], part.selector
    if "attempts" in selector:
        return [(tenant_id, learner, attempt) for learner, attempt in selector["attempts"]]
    if "learner_ids" in selector:
        return [(tenant_id, learner, None) for learner in selector["learner_ids"]]
    return [(tenant_id, None, None)]


def _coverings(attempt: tuple[str, str, str]) -> tuple[tuple[str, str | None, str | None], ...]:
    """The `_covered_by` entries that cover an attempt."""
    tenant_id, learner_id, attempt_id = attempt
    return (
        (tenant_id, learner_id, attempt_id),
        (tenant_id, learner_id, None),
        (tenant_id, None, None),
    )


def _scan_chunks(
    batch: Batch, table: str, partition: int, prefix: bytes, raw: bool = False
) -> Iterator[tuple[bytes, Any]]:
    """Every row with `prefix`, read a chunk at a time and handed on (memory stays flat)."""
    after = None
    while True:
        if raw:
            chunk: list[tuple[bytes, Any]] = list(
                batch.scan_raw(table, partition, prefix, after, SCAN_CHUNK)
            )
        else:
            chunk = batch.scan(table, partition, prefix, after, SCAN_CHUNK)
        yield from chunk
        if len(chunk) < SCAN_CHUNK:
            return
        after = chunk[-1][0]


def _apply_attempts(batch: Batch, partition: int, items: list[TrackedAttempt]) -> BatchResult:
    """Apply tracked launches of one partition: their attempts, memberships and the tenants
    they bring are written to `batch`; what to dead-letter and count is the caller's."""
    attempt_keys = {item.attempt: keys.attempt(*item.attempt) for item in items}
    learner_keys = {item.learner: keys.membership(*item.learner) for item in items}
    tenants = list(dict.fromkeys(item.tenant_id for item in items))
    stored_tenants = batch.get_many(
        keys.LEARNER_STATE, partition, [keys.license_entry(t) for t in tenants], remember=True
    )
    reads = LearnerReads(
        attempts=_read(batch, keys.ATTEMPTS, partition, attempt_keys),
        # (a group reads many of the same learners again, and its tenants' license entries:
        # `remember`; an attempt is nearly always new, so its key is read once anyway)
        memberships=_read(batch, keys.LEARNER_STATE, partition, learner_keys, remember=True),
        tenants=dict(zip(tenants, stored_tenants, strict=True)),
        erasures=erasures_reader(batch, partition, items, tenants),
    )
    result = apply_attempts(items, reads, cut_of)
    batch.put_many(
        keys.ATTEMPTS,
        partition,
        [(attempt_keys[ident], record) for ident, record in result.attempts.items()],
    )
    batch.put_many(
        keys.LEARNER_STATE,
        partition,
        [(learner_keys[learner], windows) for learner, windows in result.memberships.items()],
    )
    for tenant_id in result.new_tenants:
        batch.put(keys.LEARNER_STATE, partition, keys.license_entry(tenant_id), {"license": None})
    remember_conflicts(batch, partition, result.conflicts)
    return result


def _scan_all(batch: Batch, table: str, partition: int, prefix: bytes) -> list[tuple[bytes, Any]]:
    return scan_all(batch, table, partition, prefix, SCAN_CHUNK)
