"""Ingest: validate launches and licenses, dead-letter bad records, route the rest.

Tracked launches go to `learner-commands` keyed `tenant/learner` (the input key is not relied on);
licenses go to the tenant stage and are broadcast to every learner partition, ordered there with
that partition's attempts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from faust.types import EventT, StreamT

from schemas.deletions import DeletionRequest
from schemas.launches import Launch
from schemas.licenses import License
from streams import channels, metrics
from streams.app import app, settings
from streams.dead_letters import dead_letter, encode
from streams.decoding import Rejected, decode, future_rejection
from streams.domain.tracking import is_tracked


async def send_dead_letter(event: EventT, rejected: Rejected) -> None:
    message = event.message
    record = dead_letter(
        rejected.reason,
        rejected.detail,
        message.value,
        message.topic,
        message.partition,
        message.offset,
        datetime.now(UTC),
    )
    await channels.dead_letters.send(key=message.key, value=encode(record))
    source = message.topic.removeprefix(settings.topic_prefix)
    metrics.dead_letters_total.labels(source, rejected.reason).inc()


def attempt_command(launch: Launch, raw: bytes, event: EventT) -> dict[str, Any]:
    message = event.message
    return {
        "type": "attempt",
        "tenant_id": launch.tenant_id,
        "learner_id": launch.learner_id,
        "element_id": launch.element_id,
        "attempt_id": launch.attempt_id,
        "launched_at": launch.launched_at.isoformat(),
        # kept for a dead letter of the learner stage (conflict, erased)
        "raw": raw.decode("utf-8"),
        "source": [message.topic, message.partition, message.offset],
    }


@app.agent(channels.launches)
async def ingest_launches(stream: StreamT) -> None:
    async for event in stream.events():
        raw = event.message.value
        launch = decode(Launch, raw)
        if isinstance(launch, Rejected):
            await send_dead_letter(event, launch)
            metrics.launches_total.labels("dead_lettered").inc()
            continue
        future = future_rejection(launch.launched_at, datetime.now(UTC))
        if future is not None:
            await send_dead_letter(event, future)
            metrics.launches_total.labels("dead_lettered").inc()
            continue
        if not is_tracked(launch.launched_by, launch.content_type, launch.tracking):
            metrics.launches_total.labels("untracked").inc()
            continue
        key = f"{launch.tenant_id}/{launch.learner_id}".encode()
        await channels.learner_commands.send(key=key, value=attempt_command(launch, raw, event))
        metrics.launches_total.labels("tracked").inc()


def license_tombstone_tenant(event: EventT) -> str | None:
    """The tenant whose license a tombstone on the compacted licenses topic removes."""
    key = event.message.key
    if not key:
        return None
    try:
        tenant_id = key.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not 1 <= len(tenant_id) <= 256 or "/" in tenant_id:
        return None
    return tenant_id


@app.agent(channels.licenses)
async def ingest_licenses(stream: StreamT) -> None:
    async for event in stream.events():
        raw = event.message.value
        if raw is None:
            # A tombstone on the compacted topic: the tenant falls back to the default license.
            tenant_id = license_tombstone_tenant(event)
            if tenant_id is None:
                await send_dead_letter(
                    event, Rejected("invalid", "license tombstone without a usable tenant key")
                )
                continue
            await broadcast_license(tenant_id, None)
            metrics.licenses_total.labels("tombstone").inc()
            continue
        license_ = decode(License, raw)
        if isinstance(license_, Rejected):
            await send_dead_letter(event, license_)
            continue
        await broadcast_license(license_.tenant_id, license_.model_dump(mode="json"))
        metrics.licenses_total.labels("license").inc()


async def broadcast_license(tenant_id: str, license_: dict[str, Any] | None) -> None:
    """To the tenant stage, and to every learner partition (each re-cuts its own keys)."""
    command = {"type": "license", "tenant_id": tenant_id, "license": license_}
    key = tenant_id.encode()
    await channels.tenant_commands.send(key=key, value=command)
    for partition in range(settings.partitions):
        await channels.learner_commands.send(key=key, value=command, partition=partition)


def deletion_parts(
    request: DeletionRequest, partitions: int
) -> list[tuple[dict[str, Any], int | None]]:
    """The learner-stage commands of a request, each with its target partition (None = by key).

    Per-learner selections become one part per learner (routed by its key); `older_than`
    becomes one part per learner partition.
    """
    meta = {
        "request_id": request.request_id,
        "tenant_id": request.tenant_id,
        "mode": request.mode,
        "requested_at": request.requested_at.isoformat(),
    }
    selectors: list[tuple[dict[str, Any], str | None, int | None]] = []
    if request.attempts is not None:
        by_learner: dict[str, list[list[str]]] = {}
        for ref in request.attempts:
            by_learner.setdefault(ref.learner_id, []).append([ref.learner_id, ref.attempt_id])
        for learner_id in sorted(by_learner):
            selectors.append(({"attempts": by_learner[learner_id]}, learner_id, None))
    elif request.learner_ids is not None:
        for learner_id in sorted(set(request.learner_ids)):
            selector = {"learner_ids": [learner_id], "before": meta["requested_at"]}
            selectors.append((selector, learner_id, None))
    else:
        assert request.older_than is not None
        for partition in range(partitions):
            selectors.append(({"older_than": request.older_than.isoformat()}, None, partition))
    parts: list[tuple[dict[str, Any], int | None]] = []
    for number, (selector, target_learner, target_partition) in enumerate(selectors):
        command: dict[str, Any] = {
            "type": "deletion",
            "request": meta,
            "part": number,
            "parts": len(selectors),
            "selector": selector,
        }
        if target_learner is not None:
            command["learner_id"] = target_learner
        parts.append((command, target_partition))
    return parts


def usable_ids(raw: bytes | None) -> tuple[str, str, str] | None:
    """request_id, tenant_id and mode of an invalid request, if it has usable ones."""
    try:
        record = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    request_id, tenant_id, mode = (
        record.get("request_id"),
        record.get("tenant_id"),
        record.get("mode"),
    )
    if not (isinstance(request_id, str) and 1 <= len(request_id) <= 256):
        return None
    if not (isinstance(tenant_id, str) and 1 <= len(tenant_id) <= 256 and "/" not in tenant_id):
        return None
    return request_id, tenant_id, mode[:32] if isinstance(mode, str) else "invalid"


@app.agent(channels.attempt_deletions)
async def ingest_deletions(stream: StreamT) -> None:
    async for event in stream.events():
        raw = event.message.value
        request = decode(DeletionRequest, raw)
        if isinstance(request, Rejected):
            ids = usable_ids(raw)
            if ids is None:
                await send_dead_letter(event, request)
                continue
            # A request we can answer gets an error receipt instead of a dead letter.
            request_id, tenant_id, mode = ids
            receipt = error_receipt(request_id, tenant_id, mode, request.detail, datetime.now(UTC))
            await channels.deletion_receipts.send(key=tenant_id.encode(), value=encode(receipt))
            metrics.deletion_requests_total.labels("error").inc()
            continue
        for command, partition in deletion_parts(request, settings.partitions):
            # a per-learner part goes where the learner's attempts are; a broadcast part to
            # the partition named
            learner = command.get("learner_id")
            key = f"{request.tenant_id}/{learner}" if learner else request.tenant_id
            await channels.learner_commands.send(
                key=key.encode(), value=command, partition=partition
            )
        metrics.deletion_requests_total.labels(request.mode).inc()


def error_receipt(
    request_id: str, tenant_id: str, mode: str, error: str, now: datetime
) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "tenant_id": tenant_id,
        "mode": mode,
        "attempts_affected": 0,
        "learners_affected": 0,
        "windows": [],
        "completed_at": now.isoformat(),
        "error": error,
    }
