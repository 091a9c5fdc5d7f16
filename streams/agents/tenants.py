"""Tenant stage: licenses, partial counts summed per window, `active-learner-counts` records.

Keys of the `tenant-state` table (all of a tenant's keys live in its tenant-commands partition):
  lic/{tenant}              {"license": {...} | None}
  parts/{tenant}            {learner partition: its latest partial count}
  pub/{tenant}              {window start: [active, total]} as last published
  del/{tenant}/{request}    a deletion request's part reports, then its receipt
  thr/{tenant}              per window and threshold: above or not, crossings so far
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

from faust.types import StreamT

from schemas.licenses import License
from streams import channels, metrics
from streams.app import app
from streams.dead_letters import encode
from streams.domain.deletions import assemble_receipt_windows
from streams.domain.tenants import (
    PublishPlan,
    count_record,
    merge_partials,
    plan_publication,
    sum_partials,
)
from streams.domain.thresholds import evaluate
from streams.domain.windows import window_starting
from streams.licensing import cut_of, license_from
from streams.partition_scan import scan_prefix
from streams.tables import tenant_state

log = logging.getLogger(__name__)

TICK_INTERVAL_S = 15.0


def _license_key(tenant_id: str) -> bytes:
    return f"lic/{tenant_id}".encode()


def _partials_key(tenant_id: str) -> bytes:
    return f"parts/{tenant_id}".encode()


def _deletion_key(tenant_id: str, request_id: str) -> bytes:
    return f"del/{tenant_id}/{request_id}".encode()


def _thresholds_key(tenant_id: str) -> bytes:
    return f"thr/{tenant_id}".encode()


def _published_key(tenant_id: str) -> bytes:
    return f"pub/{tenant_id}".encode()


class TenantStage:
    async def on_license(self, command: dict[str, Any], now: datetime) -> None:
        tenant_id = command["tenant_id"]
        incoming = {"license": command["license"]}
        changed = tenant_state.get(_license_key(tenant_id)) != incoming
        tenant_state[_license_key(tenant_id)] = incoming  # also on a replay: see publish()
        # Limit or licensed flag may have changed: every record of the tenant is written again.
        await self.publish(tenant_id, now, republish=changed)

    async def on_partials(self, command: dict[str, Any], now: datetime) -> None:
        """Partial counts of one tenant from one or more learner partitions."""
        tenant_id = command["tenant_id"]
        key = _partials_key(tenant_id)
        stored = tenant_state.get(key) or {}
        merged = merge_partials(stored, command["parts"])  # late reports of old owners lose
        tenant_state[key] = merged
        await self.publish(tenant_id, now, partials=merged)

    async def on_deletion_part(self, command: dict[str, Any], now: datetime) -> None:
        """Collect one part's report; when every part is in, emit the request's one receipt."""
        request = command["request"]
        tenant_id, request_id = request["tenant_id"], request["request_id"]
        key = _deletion_key(tenant_id, request_id)
        pending = tenant_state.get(key) or {"parts": command["parts"], "received": {}}
        if pending.get("receipt") is not None:
            tenant_state[key] = pending  # a redelivered part: the receipt went out already
            return
        received = {
            **pending["received"],
            str(command["part"]): {**command["report"], "partition": command["partition"]},
        }
        pending = {**pending, "received": received}
        if len(received) == int(pending["parts"]):
            receipt = self.receipt(request, received, now)
            pending = {"parts": pending["parts"], "received": {}, "receipt": receipt}
            tenant_state[key] = pending
            await channels.deletion_receipts.send(key=tenant_id.encode(), value=encode(receipt))
            metrics.receipts_total.inc()
        else:
            tenant_state[key] = pending

    def receipt(
        self, request: dict[str, Any], received: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        tenant_id = request["tenant_id"]
        windows = assemble_receipt_windows(
            received,
            {part: int(report["partition"]) for part, report in received.items()},
            tenant_state.get(_partials_key(tenant_id)) or {},
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

    async def on_tick(self, partition: int, now: datetime) -> None:
        """Wall-clock tick: give every tenant whose new window began its zero record."""
        for key, _ in scan_prefix(tenant_state, partition, b"pub/"):
            await self.publish(key[len(b"pub/") :].decode(), now, rewrite=False)

    async def publish(
        self,
        tenant_id: str,
        now: datetime,
        republish: bool = False,
        partials: dict[str, Any] | None = None,
        rewrite: bool = True,
    ) -> None:
        stored_license = tenant_state.get(_license_key(tenant_id))
        cut = cut_of(stored_license)
        if partials is None:
            partials = tenant_state.get(_partials_key(tenant_id)) or {}
        sums = sum_partials(partials.values(), cut)
        published = tenant_state.get(_published_key(tenant_id)) or {}
        plan = plan_publication(cut, published, sums, now, republish=republish)
        # A command writes this even when unchanged: state written to RocksDB just before a
        # crash may have missed its changelog record, and its replay must put it back. Ticks
        # are not replayed commands and only write what changed.
        if plan.changed or rewrite:
            tenant_state[_published_key(tenant_id)] = plan.published
        if not plan.changed:
            return
        license_, licensed = license_from(tenant_id, stored_license)
        for update in plan.updates:
            record = count_record(tenant_id, update, license_.learner_limit, licensed, now)
            key = f"{tenant_id}/{update.window.start.isoformat()}".encode()
            await channels.active_learner_counts.send(key=key, value=encode(record))
            metrics.count_records_total.labels("update").inc()
        for start in plan.tombstones:
            await channels.active_learner_counts.send(
                key=f"{tenant_id}/{start}".encode(), value=None
            )
            metrics.count_records_total.labels("tombstone").inc()
        await self.check_thresholds(tenant_id, license_, plan, republish, rewrite, now)

    async def check_thresholds(
        self,
        tenant_id: str,
        license_: License,
        plan: PublishPlan,
        republish: bool,
        rewrite: bool,
        now: datetime,
    ) -> None:
        """Fire `up`/`down` events for windows whose count crossed a threshold.

        After a license change every window is looked at again (a new limit or threshold list
        fires what is now crossed, once); otherwise only the windows whose count changed.
        """
        windows = {update.window.start.isoformat(): update.window for update in plan.updates}
        if republish:
            cut = cut_of({"license": license_.model_dump(mode="json")})
            for start in plan.published:
                window = window_starting(cut, date.fromisoformat(start))
                if window is not None:
                    windows.setdefault(start, window)
        counts = {start: plan.published[start][0] for start in windows}
        key = _thresholds_key(tenant_id)
        state = tenant_state.get(key) or {}
        new_state, crossings = evaluate(
            tenant_id, state, counts, license_.learner_limit, license_.thresholds
        )
        if crossings or rewrite:
            tenant_state[key] = new_state
        for crossing in crossings:
            window = windows[crossing.window]
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
            await channels.threshold_events.send(key=tenant_id.encode(), value=encode(event))
            metrics.threshold_events_total.labels(crossing.direction).inc()


stage = TenantStage()


@app.agent(channels.tenant_commands)
async def tenants(stream: StreamT) -> None:
    async for event in stream.events():
        command = event.value
        kind = command.get("type") if isinstance(command, dict) else None
        now = datetime.now(UTC)
        if kind == "partials":
            await stage.on_partials(command, now)
        elif kind == "license":
            await stage.on_license(command, now)
        elif kind == "deletion-part":
            await stage.on_deletion_part(command, now)
        elif kind == "tick":
            await stage.on_tick(event.message.partition, datetime.fromisoformat(command["now"]))
        else:
            log.error("tenant-commands: unknown command %.200r", command)


@app.timer(interval=TICK_INTERVAL_S)
async def tick_new_windows() -> None:
    """Ask each tenant partition this worker owns to open windows that began by the wall clock."""
    topic = channels.tenant_commands.get_topic_name()
    now = datetime.now(UTC).isoformat()
    for tp in app.assignor.assigned_actives():
        if tp.topic == topic:
            await channels.tenant_commands.send(
                key=b"tick", value={"type": "tick", "now": now}, partition=tp.partition
            )
