"""Tenant stage: licenses, partial counts summed per window, `active-learner-counts` records.

Keys of the `tenant-state` table (all of a tenant's keys live in its tenant-commands partition):
  lic/{tenant}              {"license": {...} | None}
  parts/{tenant}            {learner partition: its latest partial count}
  pub/{tenant}              {"cut", "windows": {start: [active, total]}, "at", "sent", "gone"}
  del/{tenant}/{request}    a deletion request's part reports, then its receipt, and "at"
  thr/{tenant}              {"windows": {start: {pct: {above, crossings}}}, "at", "fired"}

Replays re-send their outputs. Outputs and state become durable together (streams/state.py), but
a crash can leave a command's state in the changelog while its output records were lost. So each
value remembers the offset of the command that last produced output from it ("at") and what that
output was; when the same command comes again (a replay) and finds nothing new to do, it sends
that output again. Count records are absolute and threshold events carry deterministic ids, so a
repeat is harmless downstream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from faust.types import EventT, StreamT

from schemas.licenses import License
from streams import channels, messages, metrics
from streams.agents.loop import run_durably
from streams.app import app, sender, settings
from streams.dead_letters import encode
from streams.domain.deletions import assemble_receipt_windows
from streams.domain.tenants import (
    CountUpdate,
    count_record,
    cut_ready,
    merge_partials,
    plan_publication,
    sum_partials,
)
from streams.domain.thresholds import Crossing, evaluate, prune
from streams.domain.windows import Cut, Window, window_starting
from streams.licensing import cut_of, license_from
from streams.partition_scan import scan_prefix
from streams.state import StateBatch
from streams.tables import tenant_state

log = logging.getLogger(__name__)

TICK_INTERVAL_S = 15.0


def _key(kind: str, tenant_id: str, *rest: str) -> bytes:
    return "/".join((kind, tenant_id, *rest)).encode()


class TenantStage:
    def __init__(self, learner_partitions: int) -> None:
        self.learner_partitions = learner_partitions

    async def on_license(
        self, batch: StateBatch, partition: int, offset: int, command: dict[str, Any], now: datetime
    ) -> None:
        tenant_id = command["tenant_id"]
        key = _key("lic", tenant_id)
        incoming = {"license": command["license"]}
        if batch.get(tenant_state, partition, key) != incoming:
            batch.put(tenant_state, partition, key, incoming)
        self.publish(batch, partition, offset, tenant_id, now)

    def on_partials(
        self, batch: StateBatch, partition: int, offset: int, command: dict[str, Any], now: datetime
    ) -> None:
        """Partial counts of several tenants, each from one or more learner partitions."""
        for tenant_id, parts in command["tenants"].items():
            # the earliest launch behind these reports: only for the latency metric
            launched = [p.pop("oldest_ms", None) for p in parts.values()]
            oldest_ms = min((ms for ms in launched if ms), default=None)
            key = _key("parts", tenant_id)
            stored = batch.get(tenant_state, partition, key) or {}
            merged = merge_partials(stored, parts)  # late reports of old owners lose
            if merged != stored:
                batch.put(tenant_state, partition, key, merged)
            if self.publish(batch, partition, offset, tenant_id, now) and oldest_ms:
                batch.on_durable(_observe_latency(oldest_ms))

    def on_deletion_part(
        self, batch: StateBatch, partition: int, offset: int, command: dict[str, Any], now: datetime
    ) -> None:
        """Collect one part's report; when every part is in, emit the request's one receipt."""
        request = command["request"]
        tenant_id, request_id = request["tenant_id"], request["request_id"]
        key = _key("del", tenant_id, request_id)
        pending = batch.get(tenant_state, partition, key) or {
            "parts": command["parts"],
            "received": {},
        }
        if pending.get("receipt") is not None:
            self._resend_receipt(batch, pending, offset)  # a redelivered part, or a replay
            return
        received = {
            **pending["received"],
            str(command["part"]): {**command["report"], "partition": command["partition"]},
        }
        if len(received) < int(pending["parts"]):
            batch.put(tenant_state, partition, key, {**pending, "received": received})
            return
        receipt = self.receipt(batch, partition, request, received, now)
        batch.put(
            tenant_state,
            partition,
            key,
            {"parts": pending["parts"], "received": {}, "receipt": receipt, "at": offset},
        )
        self._emit_receipt(batch, receipt)

    def on_deletion_error(
        self, batch: StateBatch, partition: int, offset: int, command: dict[str, Any]
    ) -> None:
        """An invalid request's error receipt: once per request id, however often it comes."""
        receipt = command["receipt"]
        key = _key("del", receipt["tenant_id"], receipt["request_id"])
        stored = batch.get(tenant_state, partition, key)
        if stored is not None:
            self._resend_receipt(batch, stored, offset)
            return
        batch.put(
            tenant_state,
            partition,
            key,
            {"parts": 0, "received": {}, "receipt": receipt, "at": offset},
        )
        self._emit_receipt(batch, receipt)

    def _resend_receipt(self, batch: StateBatch, stored: dict[str, Any], offset: int) -> None:
        if stored.get("at") == offset and stored.get("receipt") is not None:
            self._emit_receipt(batch, stored["receipt"])

    def _emit_receipt(self, batch: StateBatch, receipt: dict[str, Any]) -> None:
        batch.emit(
            channels.deletion_receipts.get_topic_name(),
            receipt["tenant_id"].encode(),
            encode(receipt),
        )
        mode = str(receipt.get("mode", "invalid"))
        batch.on_durable(metrics.receipts_total.labels(receipt["tenant_id"], mode).inc)

    def receipt(
        self,
        batch: StateBatch,
        partition: int,
        request: dict[str, Any],
        received: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        tenant_id = request["tenant_id"]
        windows = assemble_receipt_windows(
            received,
            {part: int(report["partition"]) for part, report in received.items()},
            batch.get(tenant_state, partition, _key("parts", tenant_id)) or {},
        )
        return {
            "request_id": request["request_id"],
            "tenant_id": tenant_id,
            "mode": request["mode"],
            "attempts_affected": sum(r["attempts_affected"] for r in received.values()),
            "learners_affected": sum(r["learners_affected"] for r in received.values()),
            "windows": windows,
            "completed_at": now.isoformat(),
            "error": None,
        }

    async def on_tick(self, batch: StateBatch, partition: int, offset: int, now: datetime) -> None:
        """Wall-clock tick: give every tenant whose new window began its zero record."""
        await batch.flush()  # the scan reads RocksDB
        for key, _ in scan_prefix(tenant_state, partition, b"pub/"):
            self.publish(batch, partition, offset, key[len(b"pub/") :].decode(), now)

    # -- publishing ---------------------------------------------------------------------------
    def publish(
        self, batch: StateBatch, partition: int, offset: int, tenant_id: str, now: datetime
    ) -> bool:
        """Publish what changed in the tenant's windows; fire the thresholds it crossed.

        Whether count records went out."""
        stored_license = batch.get(tenant_state, partition, _key("lic", tenant_id))
        cut = cut_of(stored_license)
        partials = batch.get(tenant_state, partition, _key("parts", tenant_id)) or {}
        pub_key = _key("pub", tenant_id)
        pub = batch.get(tenant_state, partition, pub_key) or {"cut": None, "windows": {}}
        switching = pub["cut"] is not None and pub["cut"] != cut.id
        if switching and not cut_ready(partials, cut, self.learner_partitions):
            return False  # a re-cut is under way: the last exact records stand
        # A new license (limit, thresholds, licensed flag or cut): every record is written again.
        republish = pub["cut"] is not None and pub.get("license") != stored_license
        sums = sum_partials(partials.values(), cut)
        plan = plan_publication(cut, pub["windows"], sums, now, republish=republish)
        license_, licensed = license_from(tenant_id, stored_license)
        if plan.changed:
            updates, gone, published = list(plan.updates), list(plan.tombstones), plan.published
            batch.put(
                tenant_state,
                partition,
                pub_key,
                {
                    "cut": cut.id,
                    "license": stored_license,
                    "windows": published,
                    "at": offset,
                    "sent": [update.window.start.isoformat() for update in updates],
                    "gone": gone,
                },
            )
        elif pub.get("at") == offset:
            # a replay of the command that published last: its records may have been lost
            published, gone = pub["windows"], pub.get("gone", [])
            updates = [
                CountUpdate(window, *published[start][:2])
                for start in pub.get("sent", [])
                if start in published
                and (window := window_starting(cut, date.fromisoformat(start))) is not None
            ]
        else:
            return False
        self._emit_counts(batch, tenant_id, updates, gone, license_, licensed, now)
        windows = {update.window.start.isoformat(): update.window for update in updates}
        if republish:
            for start in published:
                window = window_starting(cut, date.fromisoformat(start))
                if window is not None:
                    windows.setdefault(start, window)
        self.check_thresholds(
            batch, partition, offset, tenant_id, cut, license_, published, windows, now
        )
        return bool(updates or gone)

    def _emit_counts(
        self,
        batch: StateBatch,
        tenant_id: str,
        updates: Any,
        tombstones: Any,
        license_: License,
        licensed: bool,
        now: datetime,
    ) -> None:
        topic = channels.active_learner_counts.get_topic_name()
        for update in updates:
            record = count_record(tenant_id, update, license_.learner_limit, licensed, now)
            key = f"{tenant_id}/{update.window.start.isoformat()}".encode()
            batch.emit(topic, key, encode(record))
        for start in tombstones:
            batch.emit(topic, f"{tenant_id}/{start}".encode(), None)
        updated, removed = len(updates), len(tombstones)
        batch.on_durable(lambda: _count_metrics(updated, removed))

    def check_thresholds(
        self,
        batch: StateBatch,
        partition: int,
        offset: int,
        tenant_id: str,
        cut: Cut,
        license_: License,
        published: dict[str, list[int]],
        windows: dict[str, Window],
        now: datetime,
    ) -> None:
        """Fire `up`/`down` events for windows whose count crossed a threshold.

        After a license change every window is looked at again (a new limit or threshold list
        fires what is now crossed, once); otherwise only the windows whose count changed.
        """
        key = _key("thr", tenant_id)
        stored = batch.get(tenant_state, partition, key) or {"windows": {}}
        state = prune(stored["windows"], published, license_.thresholds)
        counts = {start: published[start][0] for start in windows if start in published}
        new_state, crossings = evaluate(
            tenant_id, state, counts, license_.learner_limit, license_.thresholds
        )
        if crossings:
            fired = [crossing.__dict__ for crossing in crossings]
            batch.put(
                tenant_state, partition, key, {"windows": new_state, "at": offset, "fired": fired}
            )
        elif stored.get("at") == offset:
            crossings = [Crossing(**fired) for fired in stored.get("fired", [])]
        elif new_state != stored["windows"]:
            batch.put(tenant_state, partition, key, {**stored, "windows": new_state})
        for crossing in crossings:
            window = windows.get(crossing.window) or window_starting(
                cut, date.fromisoformat(crossing.window)
            )
            if window is None:
                continue
            event = {
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
            batch.emit(
                channels.threshold_events.get_topic_name(), tenant_id.encode(), encode(event)
            )
            batch.on_durable(
                metrics.threshold_events_total.labels(tenant_id, crossing.direction).inc
            )


def _observe_latency(oldest_ms: int) -> Callable[[], None]:
    def observe() -> None:
        metrics.count_latency.observe(max(0.0, time.time() - oldest_ms / 1000))

    return observe


def _count_metrics(updated: int, removed: int) -> None:
    if updated:
        metrics.count_records_total.labels("update").inc(updated)
    if removed:
        metrics.count_records_total.labels("tombstone").inc(removed)


stage = TenantStage(settings.partitions)


async def handle(batch: StateBatch, event: EventT) -> None:
    command: Any = messages.decode_command(event.value)
    partition, offset = event.message.partition, event.message.offset
    kind = command.get("type") if command is not None else None
    now = datetime.now(UTC)
    if kind == messages.PARTIALS:
        stage.on_partials(batch, partition, offset, command, now)
    elif kind == messages.LICENSE:
        await stage.on_license(batch, partition, offset, command, now)
    elif kind == messages.DELETION_PART:
        # the command's own timestamp: a replay after a crash computes the identical receipt
        sent_at = datetime.fromtimestamp(event.message.timestamp, UTC)
        stage.on_deletion_part(batch, partition, offset, command, sent_at)
    elif kind == messages.DELETION_ERROR:
        stage.on_deletion_error(batch, partition, offset, command)
    elif kind == messages.TICK:
        await stage.on_tick(batch, partition, offset, datetime.fromisoformat(command["now"]))
    else:
        log.error("tenant-commands: not a command at %d/%d (type %r)", partition, offset, kind)


@app.agent(channels.tenant_commands)
async def tenants(stream: StreamT) -> None:
    await run_durably(stream, "tenants", handle)


@app.timer(interval=TICK_INTERVAL_S)
async def tick_new_windows() -> None:
    """Ask each tenant partition this worker owns to open windows that began by the wall clock."""
    topic = channels.tenant_commands.get_topic_name()
    command = encode(messages.tick_command(datetime.now(UTC).isoformat()))
    batch = StateBatch(sender)
    for tp in app.assignor.assigned_actives():
        if tp.topic == topic:
            batch.emit(topic, b"tick", command, tp.partition)
    await batch.flush()
