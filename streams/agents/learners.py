"""Learner stage: attempts, window membership and partial counts, one partition per learner.

Every learner's attempts live in one partition, so distinct counting is local: a partition knows
exactly how many of a tenant's learners it holds per window. It reports those numbers as absolute
partial counts to the tenant stage, coalesced by a timer (timers send; only agents write tables).

Keys of the `learner-state` table (all in the learner's partition):
  {tenant}             {"license": {...} | None}: the license this partition applied; also
                       marks the tenant as known here (a rebuild reports it even at 0)
  {tenant}/{learner}   the learner's windows under that license's cut
  /epoch               how many times this partition's counters were rebuilt
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from faust.types import EventT, StreamT

from streams import channels, messages, metrics, topics
from streams.agents.learner_deletions import apply_part
from streams.agents.loop import run_durably
from streams.app import app, sender, settings
from streams.dead_letters import dead_letter
from streams.dead_letters import encode as encode_json
from streams.domain.learners import (
    LearnerReads,
    PartitionCounters,
    Rejection,
    TenantCounts,
    apply_attempts,
    keys_to_read,
    membership_of,
    stored_windows,
    windows_of,
)
from streams.domain.windows import Cut
from streams.licensing import cut_of
from streams.partition_scan import has_prefix, learner_of_key, scan_chunk, scan_prefix
from streams.partitioning import tenant_partition
from streams.raw_fetch import fetch_raw
from streams.state import StateBatch
from streams.tables import attempts, erasures, learner_groups, learner_state

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.5
SCAN_CHUNK = 5_000
EPOCH_KEY = b"/epoch"


class LearnerStage:
    """The learner stage's handlers, and the derived counters of the partitions it owns."""

    def __init__(self) -> None:
        self.counters = PartitionCounters()

    # -- attempts ---------------------------------------------------------------------------
    async def on_attempts(
        self, batch: StateBatch, command: dict[str, Any], partition: int, offset: int
    ) -> None:
        items = messages.attempts_of(command)
        plan = keys_to_read(items, lambda tenants: tenants_with_markers(batch, partition, tenants))
        tenant_keys = [tenant.encode() for tenant in plan.tenants]
        reads = LearnerReads(
            attempts=_read(batch, attempts, partition, plan.attempts),
            memberships=_read(batch, learner_state, partition, plan.learners),
            tenants=dict(
                zip(
                    plan.tenants,
                    batch.get_many(learner_state, partition, tenant_keys),
                    strict=True,
                )
            ),
            markers=_read(batch, erasures, partition, plan.markers),
        )
        result = apply_attempts(items, reads, cut_of)
        for key, record in result.attempts.items():
            batch.put(attempts, partition, key, record)
        for key, windows in result.memberships.items():
            batch.put(learner_state, partition, key, windows)
        for tenant_id in result.new_tenants:
            batch.put(learner_state, partition, tenant_id.encode(), {"license": None})
        for rejection in result.rejected:
            await self._dead_letter(batch, command["topic"], rejection)
        for outcome, n in result.outcomes.items():
            metrics.attempts_total.labels(outcome).inc(n)
        cuts = {tenant_id: cut_of(reads.tenants.get(tenant_id)).id for tenant_id in plan.tenants}
        changes = result.changes
        new_tenants = result.new_tenants

        def counted() -> None:
            for tenant_id, change in changes.items():
                self.counters.apply(partition, tenant_id, cuts[tenant_id], change, offset)
            for tenant_id in new_tenants:
                self.counters.touch(partition, tenant_id, cuts[tenant_id], offset)

        batch.on_durable(counted)

    async def _dead_letter(self, batch: StateBatch, topic: str, rejection: Rejection) -> None:
        item = rejection.item
        if item.raw is not None:
            raw: bytes | None = item.raw.encode("utf-8")
        else:  # a large launch travels by reference: read it back from its position
            raw = await fetch_raw(settings, topic, item.source_partition, item.source_offset)
        record = dead_letter(
            rejection.reason,
            rejection.detail,
            raw,
            topic,
            item.source_partition,
            item.source_offset,
            datetime.now(UTC),
        )
        batch.emit(settings.topic(topics.DEAD_LETTERS), item.learner_key, encode_json(record))
        source = topic.removeprefix(settings.topic_prefix)
        metrics.dead_letters_total.labels(source, rejection.reason).inc()

    # -- teams and roles ----------------------------------------------------------------------
    def on_groups(self, batch: StateBatch, command: dict[str, Any], partition: int) -> None:
        """Store learners' teams and roles (they never change counts)."""
        for tenant_id, learner_id, teams, roles in command["groups"]:
            key = f"{tenant_id}/{learner_id}".encode()
            if teams is None and roles is None:
                batch.delete(learner_groups, partition, key)
            else:
                batch.put(learner_groups, partition, key, {"teams": teams, "roles": roles})

    # -- licenses ---------------------------------------------------------------------------
    async def on_license(
        self, batch: StateBatch, command: dict[str, Any], partition: int, offset: int
    ) -> None:
        """Store the tenant's license here; re-cut its learners when the windows change.

        A replay of the license this partition already has re-cuts too: that rewrites
        memberships a crash may have left half-written.
        """
        await batch.flush()  # the re-cut scans RocksDB
        tenant_id = command["tenant_id"]
        key = tenant_id.encode()
        stored = batch.get(learner_state, partition, key)
        incoming = {"license": command["license"]}
        old_cut, new_cut = cut_of(stored), cut_of(incoming)
        batch.put(learner_state, partition, key, incoming)
        if stored is not None and new_cut == old_cut and stored != incoming:
            # a new limit or new thresholds: nothing to re-cut; the tenant stage re-evaluates
            batch.on_durable(lambda: self.counters.touch(partition, tenant_id, new_cut.id, offset))
            return
        counts = self.recut(batch, partition, tenant_id, new_cut)
        counts.seq = offset

        def recut_done() -> None:
            self.counters.replace(partition, tenant_id, counts)

        batch.on_durable(recut_done)
        await batch.flush()  # memberships and license in one RocksDB write

    def recut(self, batch: StateBatch, partition: int, tenant_id: str, cut: Cut) -> TenantCounts:
        """The tenant's memberships in this partition recomputed from its attempts under `cut`."""
        prefix = f"{tenant_id}/".encode()
        learners: dict[bytes, set[str]] = defaultdict(set)
        after = None
        while True:
            rows, after = scan_chunk(attempts, partition, prefix, after, SCAN_CHUNK)
            for key, record in rows:
                learners[learner_of_key(key)] |= membership_of(
                    cut, [datetime.fromisoformat(record["launched_at"])]
                )
            if after is None:
                break
        # memberships of learners without attempts (a drift) go
        for key, _ in scan_prefix(learner_state, partition, prefix):
            if key not in learners:
                batch.delete(learner_state, partition, key)
        counts = TenantCounts(cut_id=cut.id)
        for key, windows in learners.items():
            batch.put(learner_state, partition, key, stored_windows(windows))
            counts.add_learner(windows)
        log.info(
            "re-cut tenant %s in partition %d to %s: %d learners",
            tenant_id,
            partition,
            cut.id,
            len(learners),
        )
        return counts

    # -- recovery ---------------------------------------------------------------------------
    async def rebuild(self, partitions: set[int]) -> None:
        """Recompute the counters of the assigned partitions from RocksDB, under a new epoch.

        The epoch is stored in the partition (its changelog), so it grows across workers and
        restores: a rebuilt partition's reports win over every late report of its previous owner.
        """
        self.counters.drop_partitions(partitions)
        batch = StateBatch(sender)
        rebuilt: dict[int, tuple[int, dict[str, TenantCounts]]] = {}
        for partition in sorted(partitions):
            epoch = int(batch.get(learner_state, partition, EPOCH_KEY) or 0) + 1
            batch.put(learner_state, partition, EPOCH_KEY, epoch)
            rebuilt[partition] = (epoch, self._count_partition(partition))
        await batch.flush()
        for partition, (epoch, tenants) in rebuilt.items():
            self.counters.reset_partition(partition, epoch, tenants)
            log.info(
                "learner partition %d rebuilt (epoch %d): %d tenants, %d learners",
                partition,
                epoch,
                len(tenants),
                sum(counts.total for counts in tenants.values()),
            )

    def _count_partition(self, partition: int) -> dict[str, TenantCounts]:
        tenants: dict[str, TenantCounts] = {}
        after = None
        while True:
            rows, after = scan_chunk(learner_state, partition, b"", after, SCAN_CHUNK)
            for key, value in rows:
                if key.startswith(b"/"):
                    continue  # partition metadata (the epoch)
                tenant, slash, _ = key.partition(b"/")
                tenant_id = tenant.decode()
                if not slash:  # the tenant's license entry
                    counts = tenants.setdefault(tenant_id, TenantCounts())
                    counts.cut_id = cut_of(value).id
                    continue
                counts = tenants.setdefault(tenant_id, TenantCounts())
                counts.add_learner(windows_of(value))
            if after is None:
                break
        for counts in tenants.values():
            if not counts.cut_id:  # memberships without a license entry: the default cut
                counts.cut_id = cut_of(None).id
        return tenants

    def partial_commands(self) -> dict[int, dict[str, Any]]:
        """Per tenant-commands partition, one `partials` command for its dirty tenants."""
        by_partition: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
        for partition, tenant_id, counts in self.counters.take_dirty():
            target = tenant_partition(tenant_id, settings.partitions)
            by_partition[target].setdefault(tenant_id, {})[str(partition)] = {
                "epoch": self.counters.epochs.get(partition, 0),
                "seq": counts.seq,
                "cut": counts.cut_id,
                "windows": counts.windows,
                "total": counts.total,
                "oldest_ms": counts.oldest_ms,
            }
        return {p: messages.partials_command(tenants) for p, tenants in by_partition.items()}


def tenants_with_markers(batch: StateBatch, partition: int, tenants: list[str]) -> set[str]:
    """Tenants with any erasure marker in this partition (most have none: no reads for them)."""
    if batch.has_writes(erasures, partition):
        return set(tenants)
    return {
        tenant_id
        for tenant_id in tenants
        if any(
            has_prefix(erasures, partition, prefix)
            for prefix in (f"a/{tenant_id}/", f"l/{tenant_id}/", f"t/{tenant_id}")
        )
    }


def _read(batch: StateBatch, table: Any, partition: int, keys: list[bytes]) -> dict[bytes, Any]:
    return dict(zip(keys, batch.get_many(table, partition, keys), strict=True))


stage = LearnerStage()


async def handle(batch: StateBatch, event: EventT) -> None:
    command: Any = messages.decode_command(event.value)
    partition, offset = event.message.partition, event.message.offset
    kind = command.get("type") if command is not None else None
    if kind == messages.ATTEMPTS:
        await stage.on_attempts(batch, command, partition, offset)
    elif kind == messages.LICENSE:
        await stage.on_license(batch, command, partition, offset)
    elif kind == messages.GROUPS:
        stage.on_groups(batch, command, partition)
    elif kind == messages.DELETION:
        report = await apply_part(stage, batch, command, partition, offset)
        target = tenant_partition(command["request"]["tenant_id"], settings.partitions)
        batch.emit(
            channels.tenant_commands.get_topic_name(),
            command["request"]["tenant_id"].encode(),
            encode_json(messages.deletion_part_command(command, partition, report)),
            target,
        )
    else:
        log.error("learner-commands: not a command at %d/%d (type %r)", partition, offset, kind)


@app.agent(channels.learner_commands)
async def learners(stream: StreamT) -> None:
    await run_durably(stream, "learners", handle)


@learner_state.on_recover
async def rebuild_learner_counters() -> None:
    topic = channels.learner_commands.get_topic_name()
    assigned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}
    await stage.rebuild(assigned)


@app.timer(interval=FLUSH_INTERVAL_S)
async def flush_partial_counts() -> None:
    commands = stage.partial_commands()
    if not commands:
        return
    batch = StateBatch(sender)
    topic = channels.tenant_commands.get_topic_name()
    for partition, command in commands.items():
        batch.emit(topic, b"partials", encode_json(command), partition)
    await batch.flush()
    metrics.partials_total.inc(len(commands))
