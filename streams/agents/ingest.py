"""Ingest: validate licenses and deletion requests, dead-letter bad records, route the rest.

Launches arrive in bulk through streams/agents/launch_reader.py. Licenses go to the tenant stage
and are broadcast to every learner partition, ordered there with that partition's attempts.
Deletion requests are split into one part per learner partition they concern.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from faust.types import EventT, StreamT

from schemas.deletions import DeletionRequest
from schemas.licenses import License
from streams import channels, messages, metrics
from streams.agents import launch_reader  # noqa: F401  (registers the bulk launch reader)
from streams.agents.loop import run_durably
from streams.app import app, settings
from streams.dead_letters import dead_letter, encode
from streams.decoding import Rejected, decode, deletion_rejection
from streams.partitioning import learner_partition, tenant_partition
from streams.state import StateBatch


def emit_dead_letter(batch: StateBatch, event: EventT, rejected: Rejected) -> None:
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
    batch.emit(channels.dead_letters.get_topic_name(), message.key, encode(record))
    source = message.topic.removeprefix(settings.topic_prefix)
    metrics.dead_letters_total.labels(source, rejected.reason).inc()


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


async def handle_license(batch: StateBatch, event: EventT) -> None:
    raw = event.message.value
    if raw is None:
        # A tombstone on the compacted topic: the tenant falls back to the default license.
        tenant_id = license_tombstone_tenant(event)
        if tenant_id is None:
            emit_dead_letter(
                batch, event, Rejected("invalid", "license tombstone without a usable tenant key")
            )
            return
        broadcast_license(batch, tenant_id, None)
        metrics.licenses_total.labels("tombstone").inc()
        return
    license_ = decode(License, raw)
    if isinstance(license_, Rejected):
        emit_dead_letter(batch, event, license_)
        return
    broadcast_license(batch, license_.tenant_id, license_.model_dump(mode="json"))
    metrics.licenses_total.labels("license").inc()


def broadcast_license(batch: StateBatch, tenant_id: str, license_: dict[str, Any] | None) -> None:
    """To the tenant stage, and to every learner partition (each re-cuts its own keys)."""
    command = encode(messages.license_command(tenant_id, license_))
    key = tenant_id.encode()
    batch.emit(
        channels.tenant_commands.get_topic_name(),
        key,
        command,
        tenant_partition(tenant_id, settings.partitions),
    )
    for partition in range(settings.partitions):
        batch.emit(channels.learner_commands.get_topic_name(), key, command, partition)


@app.agent(channels.licenses)
async def ingest_licenses(stream: StreamT) -> None:
    await run_durably(stream, "ingest-licenses", handle_license)


def deletion_parts(request: DeletionRequest, partitions: int) -> list[tuple[dict[str, Any], int]]:
    """The learner-stage commands of a request, each with its target partition.

    `attempts` and `learner_ids` give one part per learner partition holding selected learners;
    `older_than` gives one part per learner partition. Parts are numbered in partition order.
    """
    meta = {
        "request_id": request.request_id,
        "tenant_id": request.tenant_id,
        "mode": request.mode,
        "requested_at": request.requested_at.isoformat(),
    }
    tenant = request.tenant_id
    selectors: dict[int, dict[str, Any]] = {}
    if request.attempts is not None:
        unique = dict.fromkeys((ref.learner_id, ref.attempt_id) for ref in request.attempts)
        for learner_id, attempt_id in unique:
            part = selectors.setdefault(
                learner_partition(tenant, learner_id, partitions), {"attempts": []}
            )
            part["attempts"].append([learner_id, attempt_id])
    elif request.learner_ids is not None:
        for learner_id in sorted(set(request.learner_ids)):
            part = selectors.setdefault(
                learner_partition(tenant, learner_id, partitions),
                {"learner_ids": [], "before": meta["requested_at"]},
            )
            part["learner_ids"].append(learner_id)
    else:
        assert request.older_than is not None
        cutoff = request.older_than.isoformat()
        selectors = {partition: {"older_than": cutoff} for partition in range(partitions)}
    ordered = sorted(selectors.items())
    return [
        (
            {
                "type": messages.DELETION,
                "request": meta,
                "part": number,
                "parts": len(ordered),
                "selector": selector,
            },
            partition,
        )
        for number, (partition, selector) in enumerate(ordered)
    ]


def usable_ids(raw: bytes | None) -> tuple[str, str, str] | None:
    """request_id, tenant_id and mode of an invalid request, if it has usable ones."""
    try:
        record = json.loads(raw) if raw else None
    except (ValueError, RecursionError):
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


async def handle_deletion(batch: StateBatch, event: EventT) -> None:
    raw = event.message.value
    now = datetime.now(UTC)
    request = decode(DeletionRequest, raw)
    if not isinstance(request, Rejected):
        request = deletion_rejection(request, raw, now) or request
    if isinstance(request, Rejected):
        ids = usable_ids(raw)
        if ids is None:
            emit_dead_letter(batch, event, request)
            return
        # A request we can answer gets an error receipt (through the tenant stage, which sends
        # it once per request id) instead of a dead letter.
        request_id, tenant_id, mode = ids
        receipt = error_receipt(request_id, tenant_id, mode, request.detail, now)
        batch.emit(
            channels.tenant_commands.get_topic_name(),
            tenant_id.encode(),
            encode(messages.deletion_error_command(receipt)),
            tenant_partition(tenant_id, settings.partitions),
        )
        metrics.deletion_requests_total.labels("error").inc()
        return
    topic = channels.learner_commands.get_topic_name()
    for command, partition in deletion_parts(request, settings.partitions):
        batch.emit(topic, request.tenant_id.encode(), encode(command), partition)
    metrics.deletion_requests_total.labels(request.mode).inc()


@app.agent(channels.attempt_deletions)
async def ingest_deletions(stream: StreamT) -> None:
    await run_durably(stream, "ingest-deletions", handle_deletion)


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
