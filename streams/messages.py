"""Every command the stages send each other, in one place (JSON objects with a `type`).

learner-commands (ingest -> learner stage; one partition per learner, see streams/partitioning.py)
  attempts   {type, topic, attempts: [[tenant, learner, element, attempt, launched_at,
              source partition, source offset, raw | null, timestamp ms], ...]}
             the tracked launches of one ingest batch that belong to this partition, in order;
             `raw` is the launch as received when it is small (else read back by its position)
  license    {type, tenant_id, license: {...} | null}       sent to every partition
  groups     {type, groups: [[tenant, learner, teams | null, roles | null], ...]}
             learners' teams and roles (null: a tombstone removes them)
  deletion   {type, request: {request_id, tenant_id, mode, requested_at}, part, parts,
              selector: {attempts: [[learner, attempt], ...]} | {learner_ids: [...], before}
                        | {older_than} | {teams: [...], before} | {roles: [...], before}}
             one part per partition that holds selected learners (or every partition)

tenant-commands (-> tenant stage; one partition per tenant)
  license         {type, tenant_id, license: {...} | null}
  partials        {type, tenants: {tenant: {learner partition: partial}}}
                  partial = {epoch, seq, cut, windows: {start: active}, total}: absolute counts
                  (+ oldest_ms: the earliest launch behind a change, for a latency metric)
  deletion-part   {type, request, part, parts, partition, report}
  deletion-error  {type, receipt}   an invalid request's error receipt (deduplicated there)
  tick            {type, now}       a wall-clock tick: open windows that began
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.domain.learners import TrackedAttempt

ATTEMPTS = "attempts"
LICENSE = "license"
GROUPS = "groups"
DELETION = "deletion"
PARTIALS = "partials"
DELETION_PART = "deletion-part"
DELETION_ERROR = "deletion-error"
TICK = "tick"


def attempt_row(item: TrackedAttempt) -> list[Any]:
    return list(item)


def attempts_command(topic: str, rows: list[list[Any]]) -> dict[str, Any]:
    return {"type": ATTEMPTS, "topic": topic, "attempts": rows}


def attempts_of(command: dict[str, Any]) -> list[TrackedAttempt]:
    # rows of an earlier version have no timestamp: the NamedTuple's defaults fill it in
    return [TrackedAttempt(*row) for row in command["attempts"]]


def license_command(tenant_id: str, license_: dict[str, Any] | None) -> dict[str, Any]:
    return {"type": LICENSE, "tenant_id": tenant_id, "license": license_}


def groups_command(rows: list[list[Any]]) -> dict[str, Any]:
    return {"type": GROUPS, "groups": rows}


def partials_command(tenants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"type": PARTIALS, "tenants": tenants}


def deletion_part_command(
    command: dict[str, Any], partition: int, report: dict[str, Any]
) -> dict[str, Any]:
    return {
        "type": DELETION_PART,
        "request": command["request"],
        "part": command["part"],
        "parts": command["parts"],
        "partition": partition,
        "report": report,
    }


def deletion_error_command(receipt: dict[str, Any]) -> dict[str, Any]:
    return {"type": DELETION_ERROR, "receipt": receipt}


def tick_command(now_iso: str) -> dict[str, Any]:
    return {"type": TICK, "now": now_iso}


def decode_command(value: bytes | None) -> dict[str, Any] | None:
    """A command from its JSON bytes; None when it is not a command (logged by the caller)."""
    try:
        command = orjson.loads(value) if value else None
    except orjson.JSONDecodeError:
        return None
    return command if isinstance(command, dict) else None
