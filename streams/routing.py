"""Routing a batch of launch records: validate each, drop untracked, group the rest by partition.

A pure function over one fetched batch: the launch reader (streams/agents/launch_reader.py) does
the I/O. Every rule applies per launch, exactly as for a single record: bad input becomes a dead
letter with its reason, untracked launches are counted and dropped, a tracked launch becomes one
row of the learner command of its learner's partition, in input order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from schemas.deletions import DeletionRequest
from schemas.launches import Launch
from streams import messages
from streams.decoding import Rejected, decode, future_rejection
from streams.domain.tracking import is_tracked
from streams.partitioning import learner_partition

# A launch's raw text rides inside its learner command only up to this size; a larger one is
# referenced by position (streams/raw_fetch.py), so commands stay far below Kafka's 1 MB limit.
RAW_INLINE_MAX = 1024
# Learner commands are cut at about this size.
COMMAND_MAX_BYTES = 256 * 1024


class InputRecord(Protocol):
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    timestamp: int  # ms


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    rejected: Rejected


@dataclass
class RoutedLaunches:
    rows: dict[int, list[list[Any]]] = field(default_factory=dict)  # partition -> attempt rows
    dead_letters: list[DeadLetter] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)  # tracked, untracked, dead_lettered

    def commands(self) -> Iterable[tuple[int, list[list[Any]]]]:
        """(partition, rows) per learner command, each below COMMAND_MAX_BYTES."""
        for partition, rows in self.rows.items():
            chunk: list[list[Any]] = []
            size = 0
            for row in rows:
                row_size = 96 + sum(len(part) for part in row[:5]) + len(row[7] or "")
                if chunk and size + row_size > COMMAND_MAX_BYTES:
                    yield partition, chunk
                    chunk, size = [], 0
                chunk.append(row)
                size += row_size
            if chunk:
                yield partition, chunk


def route_launches(
    records: Iterable[InputRecord], partitions: int, now: datetime
) -> RoutedLaunches:
    routed = RoutedLaunches()
    for record in records:
        raw = record.value
        launch = decode(Launch, raw)
        if isinstance(launch, Rejected):
            routed.dead_letters.append(
                DeadLetter(record.key, raw, record.partition, record.offset, launch)
            )
            routed.outcomes["dead_lettered"] += 1
            continue
        future = future_rejection(launch.launched_at, now)
        if future is not None:
            routed.dead_letters.append(
                DeadLetter(record.key, raw, record.partition, record.offset, future)
            )
            routed.outcomes["dead_lettered"] += 1
            continue
        if not is_tracked(launch.launched_by, launch.content_type, launch.tracking):
            routed.outcomes["untracked"] += 1
            continue
        assert raw is not None
        target = learner_partition(launch.tenant_id, launch.learner_id, partitions)
        # a TrackedAttempt as a row (streams/messages.py), built directly: this runs per launch
        routed.rows.setdefault(target, []).append(
            [
                launch.tenant_id,
                launch.learner_id,
                launch.element_id,
                launch.attempt_id,
                launch.launched_at.isoformat(),
                record.partition,
                record.offset,
                raw.decode("utf-8") if len(raw) <= RAW_INLINE_MAX else None,
                record.timestamp,
            ]
        )
        routed.outcomes["tracked"] += 1
    return routed


def deletion_parts(request: DeletionRequest, partitions: int) -> list[tuple[dict[str, Any], int]]:
    """The learner-stage commands of a request, each with its target partition.

    `attempts` and `learner_ids` give one part per learner partition holding selected learners;
    `older_than`, `teams` and `roles` one part per learner partition. Parts are numbered in
    partition order.
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
    elif request.teams is not None or request.roles is not None:
        # who belongs to a team is known where each learner's groups live: every partition
        kind, groups = ("teams", request.teams) if request.teams else ("roles", request.roles)
        selector = {kind: sorted(set(groups or ())), "before": meta["requested_at"]}
        selectors = {partition: dict(selector) for partition in range(partitions)}
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
