"""Learner stage: attempts, window membership and partial counts, keyed tenant/learner.

Every learner's attempts live in one partition, so distinct counting is local: a partition knows
exactly how many of a tenant's learners it holds per window. It reports those numbers as absolute
partial counts to the tenant stage, coalesced by a timer (timers send; only agents write tables).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from faust.types import StreamT

from streams import channels, metrics
from streams.agents.learner_deletions import apply_part, markers_for
from streams.app import app, settings
from streams.dead_letters import dead_letter, encode
from streams.domain.deletions import erasure_of
from streams.domain.learners import (
    AttemptOutcome,
    PartitionCounters,
    TenantCounts,
    add_attempt,
    classify_attempt,
    membership_of,
)
from streams.domain.windows import Cut
from streams.licensing import cut_of
from streams.partition_scan import scan_prefix
from streams.tables import attempts, learner_licenses, learner_state

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0


class LearnerStage:
    """Per-event logic of the learner stage, and the partitions' derived counters."""

    def __init__(self) -> None:
        self.counters = PartitionCounters()
        self.epochs: dict[int, int] = {}  # partition -> when its counters were (re)built

    def epoch(self, partition: int) -> int:
        return self.epochs.setdefault(partition, time.time_ns())

    # -- attempts ---------------------------------------------------------------------------
    async def on_attempt(self, command: dict[str, Any], partition: int, offset: int) -> None:
        tenant_id, learner_id = command["tenant_id"], command["learner_id"]
        cut = cut_of(learner_licenses.get(tenant_id.encode()))
        counts = self.counters.at_offset(partition, tenant_id, cut.id, offset)
        launched_at = datetime.fromisoformat(command["launched_at"])
        key = f"{tenant_id}/{learner_id}/{command['attempt_id']}".encode()
        stored = attempts.get(key)
        outcome = classify_attempt(stored, command["element_id"], launched_at)
        metrics.attempts_total.labels(outcome.value).inc()
        learner_key = f"{tenant_id}/{learner_id}".encode()
        if outcome is AttemptOutcome.REPEAT:
            # A replay rewrites what the first delivery wrote: if that delivery reached RocksDB
            # but its changelog records died with the process, this puts them back.
            attempts[key] = stored
            learner_state[learner_key] = learner_state.get(learner_key) or {}
            return
        if outcome is AttemptOutcome.NEW:
            erased = erasure_of(
                markers_for(tenant_id, learner_id, command["attempt_id"]), launched_at
            )
            if erased is not None:
                metrics.attempts_total.labels("erased").inc()
                await self._dead_letter("erased", erased, command)
                return
        if outcome is AttemptOutcome.CONFLICT:
            assert stored is not None
            await self._dead_letter("conflict", _conflict_detail(stored, command), command)
            return
        attempts[key] = {
            "tenant_id": tenant_id,
            "learner_id": learner_id,
            "element_id": command["element_id"],
            "attempt_id": command["attempt_id"],
            "launched_at": command["launched_at"],
            "logically_deleted": False,
        }
        change = add_attempt(learner_state.get(learner_key) or {}, cut, launched_at)
        learner_state[learner_key] = change.membership
        if change.joined_window:
            counts.windows[change.window] = counts.windows.get(change.window, 0) + 1
        if change.joined_tenant:
            counts.total += 1
        if change.joined_window or change.joined_tenant:
            self.counters.mark_dirty(partition, tenant_id)

    async def _dead_letter(self, reason: str, detail: str, command: dict[str, Any]) -> None:
        topic, source_partition, source_offset = command["source"]
        record = dead_letter(
            reason,
            detail,
            command["raw"].encode("utf-8"),
            topic,
            source_partition,
            source_offset,
            datetime.now(UTC),
        )
        key = f"{command['tenant_id']}/{command['learner_id']}".encode()
        await channels.dead_letters.send(key=key, value=encode(record))
        source = topic.removeprefix(settings.topic_prefix)
        metrics.dead_letters_total.labels(source, reason).inc()

    # -- licenses ---------------------------------------------------------------------------
    def on_license(self, command: dict[str, Any], partition: int, offset: int) -> None:
        tenant_id = command["tenant_id"]
        key = tenant_id.encode()
        stored = learner_licenses.get(key)
        incoming = {"license": command["license"]}
        old_cut, new_cut = cut_of(stored), cut_of(incoming)
        self.counters.at_offset(partition, tenant_id, old_cut.id, offset)
        # A new cut re-cuts; so does a replay of the license we have, to rewrite memberships
        # whose changelog records a crash may have lost. A new limit alone changes nothing here.
        if new_cut != old_cut or stored == incoming:
            self.recut(partition, tenant_id, new_cut)
        learner_licenses[key] = incoming

    def recut(self, partition: int, tenant_id: str, cut: Cut) -> None:
        """Recompute the memberships of a tenant's learners in this partition under a new cut."""
        instants: dict[str, list[datetime]] = defaultdict(list)
        for key, record in scan_prefix(attempts, partition, f"{tenant_id}/".encode()):
            learner_id = key.split(b"/", 2)[1].decode()
            instants[learner_id].append(datetime.fromisoformat(record["launched_at"]))
        counts = TenantCounts(
            cut_id=cut.id, seq=self.counters.tenant(partition, tenant_id, cut.id).seq
        )
        for learner_id, launched in instants.items():
            membership = membership_of(cut, launched)
            learner_state[f"{tenant_id}/{learner_id}".encode()] = membership
            counts.add_learner(membership)
        self.counters.replace(partition, tenant_id, counts)
        log.info(
            "re-cut tenant %s in partition %d to %s: %d learners",
            tenant_id,
            partition,
            cut.id,
            len(instants),
        )

    # -- recovery ---------------------------------------------------------------------------
    def rebuild(self, partitions: set[int]) -> None:
        """Recompute the counters of the assigned partitions from RocksDB (after recovery)."""
        self.counters.drop_partitions(partitions)
        for partition in sorted(partitions):
            cuts = {
                key.decode(): cut_of(value)
                for key, value in scan_prefix(learner_licenses, partition, b"")
            }
            tenants: dict[str, TenantCounts] = {
                tenant_id: TenantCounts(cut_id=cut.id) for tenant_id, cut in cuts.items()
            }
            learners = 0
            for key, membership in scan_prefix(learner_state, partition, b""):
                tenant_id = key.split(b"/", 1)[0].decode()
                if tenant_id not in tenants:
                    tenants[tenant_id] = TenantCounts(cut_id=cuts.get(tenant_id, cut_of(None)).id)
                tenants[tenant_id].add_learner(membership)
                learners += 1
            # A new epoch: these absolute counts replace whatever an earlier owner reported.
            self.epochs[partition] = time.time_ns()
            self.counters.reset_partition(partition, tenants)
            log.info(
                "learner partition %d rebuilt: %d tenants, %d learners",
                partition,
                len(tenants),
                learners,
            )

    def partial_commands(self) -> list[dict[str, Any]]:
        """One command per dirty tenant, carrying the counts of each of its dirty partitions."""
        by_tenant: dict[str, dict[str, Any]] = {}
        for partition, tenant_id, counts in self.counters.take_dirty():
            by_tenant.setdefault(tenant_id, {})[str(partition)] = {
                "epoch": self.epoch(partition),
                "seq": counts.seq,
                "cut": counts.cut_id,
                "windows": counts.windows,
                "total": counts.total,
            }
        return [
            {"type": "partials", "tenant_id": tenant_id, "parts": parts}
            for tenant_id, parts in by_tenant.items()
        ]


def _conflict_detail(stored: dict[str, Any], command: dict[str, Any]) -> str:
    return (
        f"attempt {command['attempt_id']} of learner {command['learner_id']} exists with "
        f"element_id {stored['element_id']!r} and launched_at {stored['launched_at']}; this launch "
        f"says {command['element_id']!r} and {command['launched_at']}"
    )


stage = LearnerStage()


@app.agent(channels.learner_commands)
async def learners(stream: StreamT) -> None:
    async for event in stream.events():
        command = event.value
        partition, offset = event.message.partition, event.message.offset
        kind = command.get("type") if isinstance(command, dict) else None
        if kind == "attempt":
            await stage.on_attempt(command, partition, offset)
        elif kind == "license":
            stage.on_license(command, partition, offset)
        elif kind == "deletion":
            report = apply_part(stage, command, partition, offset)
            await channels.tenant_commands.send(
                key=command["request"]["tenant_id"].encode(),
                value={
                    "type": "deletion-part",
                    "request": command["request"],
                    "part": command["part"],
                    "parts": command["parts"],
                    "partition": partition,
                    "report": report,
                },
            )
        else:
            log.error(
                "learner-commands: unknown command at %d/%d: %.200r", partition, offset, command
            )


@learner_state.on_recover
async def rebuild_learner_counters() -> None:
    topic = channels.learner_commands.get_topic_name()
    assigned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}
    stage.rebuild(assigned)


@app.timer(interval=FLUSH_INTERVAL_S)
async def flush_partial_counts() -> None:
    for command in stage.partial_commands():
        await channels.tenant_commands.send(key=command["tenant_id"].encode(), value=command)
        metrics.partials_total.inc()
