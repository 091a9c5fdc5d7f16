"""Ingest: validate licenses and deletion requests, dead-letter bad records, route the rest.

Launches arrive in bulk through streams/agents/launch_reader.py. Licenses go to the tenant stage
and are broadcast to every learner partition, ordered there with that partition's attempts.
Deletion requests are split into one part per learner partition they concern. Learners' teams
and roles (`learner-groups`) go to their learner partitions, batched.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from faust.types import EventT, StreamT

from schemas.deletions import DeletionRequest
from schemas.groups import LearnerGroups
from schemas.licenses import License
from streams import channels, messages, metrics
from streams.agents import launch_reader  # noqa: F401  (registers the bulk launch reader)
from streams.agents.loop import run_durably
from streams.app import app, settings
from streams.dead_letters import dead_letter, encode
from streams.decoding import Rejected, decode, deletion_rejection, usable_ids
from streams.partitioning import learner_partition, tenant_partition
from streams.routing import deletion_parts, error_receipt
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


async def handle_deletion(batch: StateBatch, event: EventT) -> None:
    raw = event.message.value
    now = datetime.now(UTC)
    request = decode(DeletionRequest, raw)
    if not isinstance(request, Rejected):
        request = deletion_rejection(request, now) or request
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


class GroupRouter:
    """Learner-groups records of one group of events, one command per learner partition."""

    ROWS_PER_COMMAND = 2_000

    def __init__(self) -> None:
        self.rows: dict[int, list[list[Any]]] = defaultdict(list)

    async def handle(self, batch: StateBatch, event: EventT) -> None:
        raw = event.message.value
        if raw is None:
            ids = learner_key_ids(event.message.key)
            if ids is None:
                emit_dead_letter(
                    batch,
                    event,
                    Rejected("invalid", "learner-groups tombstone without a tenant/learner key"),
                )
                return
            row: list[Any] = [*ids, None, None]  # the learner's groups are removed
        else:
            groups = decode(LearnerGroups, raw)
            if isinstance(groups, Rejected):
                emit_dead_letter(batch, event, groups)
                return
            row = [groups.tenant_id, groups.learner_id, list(groups.teams), list(groups.roles)]
        self.rows[learner_partition(row[0], row[1], settings.partitions)].append(row)

    def finish(self, batch: StateBatch) -> None:
        topic = channels.learner_commands.get_topic_name()
        for partition, rows in self.rows.items():
            for start in range(0, len(rows), self.ROWS_PER_COMMAND):
                chunk = rows[start : start + self.ROWS_PER_COMMAND]
                batch.emit(topic, b"groups", encode(messages.groups_command(chunk)), partition)
        self.rows.clear()


def learner_key_ids(key: bytes | None) -> tuple[str, str] | None:
    """tenant and learner of a `tenant/learner` key, if it is one."""
    try:
        tenant, slash, learner = (key or b"").decode("utf-8").partition("/")
    except UnicodeDecodeError:
        return None
    if not slash or "/" in learner or not (0 < len(tenant) <= 256 and 0 < len(learner) <= 256):
        return None
    return tenant, learner


@app.agent(channels.learner_groups)
async def ingest_groups(stream: StreamT) -> None:
    router = GroupRouter()
    await run_durably(
        stream, "ingest-groups", router.handle, max_events=2_000, finish=router.finish
    )
