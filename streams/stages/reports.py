"""The reports of one learner partition this worker owns, read from its tables in chunks.

Every report reads the tenant's attempts in key order, `CHUNK` rows at a time, yielding to the
event loop between chunks (the stages keep running while a report reads) and never holding an
iterator across an `await`. Rows come out ordered by learner id (streams/domain/reports.py);
the teams and roles of a chunk's learners are read with one multi-get.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.domain import reports, tallies
from streams.domain.learners import PartitionCounters, window_span
from streams.domain.reports import GroupTally, LearnerAttempts, Span
from streams.domain.tallies import Tallies, WindowTally
from streams.domain.windows import Cut, window_of
from streams.stages import keys
from streams.stages.store import Reads

# Rows read at a time: a report merges one chunk of every partition, so small chunks keep its
# memory flat (12 partitions x 1,000 rows); a RocksDB seek per chunk costs little.
CHUNK = 1_000


async def tenant_learners(
    state: Reads, partition: int, tenant_id: str, chunk: int | None = None
) -> AsyncIterator[list[LearnerAttempts]]:
    """The tenant's learners of this partition with their attempts, chunk by chunk (CHUNK rows
    unless told, read when called: the simulator lowers it), in key order; a learner is never
    split between chunks."""
    chunk = chunk or CHUNK
    prefix = keys.attempts_of_tenant(tenant_id)
    after: bytes | None = None
    carry: list[tuple[bytes, bytes]] = []
    while True:
        rows = state.scan(keys.ATTEMPTS, partition, prefix, after, chunk)
        if not rows:
            break
        after = rows[-1][0]
        rows = carry + rows
        # the last learner of the chunk may go on in the next one: keep its rows back
        last = keys.learner_of_attempt(rows[-1][0])
        split = len(rows)
        while split > 0 and keys.learner_of_attempt(rows[split - 1][0]) == last:
            split -= 1
        if len(rows) < chunk + len(carry):  # the scan ended: nothing goes on
            split = len(rows)
        complete, carry = rows[:split], rows[split:]
        if complete:
            yield list(reports.learners_of(complete, len(prefix)))
        await asyncio.sleep(0)
    if carry:
        yield list(reports.learners_of(carry, len(prefix)))


def _groups(
    state: Reads, partition: int, tenant_id: str, learners: Sequence[str]
) -> list[dict[str, Any] | None]:
    found = state.get_many(
        keys.LEARNER_GROUPS, partition, [keys.groups(tenant_id, learner) for learner in learners]
    )
    return [None if raw is None else orjson.loads(raw) for raw in found]


def _lists(groups: dict[str, Any] | None) -> tuple[list[str], list[str]]:
    if not groups:
        return [], []
    return sorted(groups.get("teams") or ()), sorted(groups.get("roles") or ())


async def window_rows(
    state: Reads, partition: int, tenant_id: str, window: Span
) -> AsyncIterator[list[list[Any]]]:
    """[learner, first, last, attempts, teams, roles] of the learners counted in the window,
    ordered by learner id, in chunks."""
    async for rows in _with_groups(
        state, partition, tenant_id, lambda learners: reports.window_rows(learners, window)
    ):
        yield rows


async def learner_rows(
    state: Reads, partition: int, tenant_id: str, current: Span
) -> AsyncIterator[list[list[Any]]]:
    """[learner, active, last attempt, teams, roles] of every learner with attempts, ordered by
    learner id, in chunks."""
    async for rows in _with_groups(
        state, partition, tenant_id, lambda learners: reports.learner_rows(learners, current)
    ):
        yield rows


async def _with_groups(
    state: Reads,
    partition: int,
    tenant_id: str,
    rows_of: Callable[[list[LearnerAttempts]], Iterable[tuple[Any, ...]]],
) -> AsyncIterator[list[list[Any]]]:
    """The rows `rows_of` makes of each chunk of learners, each with the learner's teams and
    roles, in learner-id order."""

    async def unordered() -> AsyncIterator[list[list[Any]]]:
        async for learners in tenant_learners(state, partition, tenant_id):
            rows = list(rows_of(learners))
            groups = _groups(state, partition, tenant_id, [row[0] for row in rows])
            yield [[*row, *_lists(group)] for row, group in zip(rows, groups, strict=True)]

    def exists(learner: str) -> bool:
        # (a learner with attempts in this partition; one that has no row in the report only
        # holds rows back until its key has passed, as if it had one)
        prefix = keys.attempts_of_learner(tenant_id, learner)
        return bool(state.scan(keys.ATTEMPTS, partition, prefix, None, 1))

    async for rows in _ordered(unordered(), exists):
        yield rows


async def _ordered(
    chunks: AsyncIterator[list[list[Any]]], exists: Callable[[str], bool] | None = None
) -> AsyncIterator[list[list[Any]]]:
    """Chunks of rows in key order to chunks in learner-id order (none empty)."""
    order = reports.LearnerOrder(exists)
    async for rows in chunks:
        ready = [row for learner_row in rows for _, row in order.push(learner_row[0], learner_row)]
        if ready:
            yield ready
    rest = [row for _, row in order.finish()]
    if rest:
        yield rest


async def groups(state: Reads, partition: int, tenant_id: str, window: Span) -> GroupTally:
    tally = GroupTally()
    async for learners in tenant_learners(state, partition, tenant_id):
        active = [row[0] for row in reports.window_rows(learners, window)]
        for group in _groups(state, partition, tenant_id, active):
            tally.add(group)
    return tally


async def daily_firsts(
    state: Reads, partition: int, tenant_id: str, window: Span, timezone: str
) -> dict[str, int]:
    days = reports.LocalDays(window, timezone)
    per_day = [0] * len(days.days)
    async for learners in tenant_learners(state, partition, tenant_id):
        per_day = [a + b for a, b in zip(per_day, days.firsts(learners), strict=True)]
    return dict(days.named(per_day))


async def advisor(
    state: Reads, partition: int, tenant_id: str, window: Span, cutoffs: Sequence[float]
) -> tuple[list[int], list[int]]:
    active_after = [0] * len(cutoffs)
    removed = [0] * len(cutoffs)
    async for learners in tenant_learners(state, partition, tenant_id):
        active, gone = reports.advisor_tally(learners, window, cutoffs)
        active_after = [a + b for a, b in zip(active_after, active, strict=True)]
        removed = [a + b for a, b in zip(removed, gone, strict=True)]
    return active_after, removed


# -- the same two from the tallies kept in memory (streams/domain/tallies.py) -------------------


def _tallied(
    counters: PartitionCounters, partition: int, tenant_id: str, window: Span, timezone: str
) -> tuple[WindowTally, Tallies] | None:
    """The tenant's tallies of this window in this partition, when they answer exactly what
    was asked: the partition applies the same cut (zone and window bounds) and tallies the
    window. None otherwise (then a scan answers)."""
    counts = counters.get(partition, tenant_id)
    if counts is None or partition not in counters.tracked_from:
        return None  # not rebuilt here yet, or nothing of the tenant
    # a tenant known here without tallies has neither attempts nor members
    tenant_tallies = counters.tallies_if_any(partition, tenant_id) or Tallies(
        counters.tracked_from[partition]
    )
    cut = Cut.from_id(counts.cut_id)
    span = (window.start, window.end)
    if cut.timezone != timezone:
        return None
    if window_span(window_of(cut, datetime.fromtimestamp(window.start, UTC))) != span:
        return None
    tally = tenant_tallies.tallied(span)
    return None if tally is None else (tally, tenant_tallies)


def tallied_firsts(
    counters: PartitionCounters, partition: int, tenant_id: str, window: Span, timezone: str
) -> dict[str, int] | None:
    """`daily_firsts` from the tallies, or None when they cannot answer."""
    found = _tallied(counters, partition, tenant_id, window, timezone)
    if found is None:
        return None
    days = reports.LocalDays(window, timezone)
    return dict(days.named(tallies.daily_firsts(found[0], days.days)))


def tallied_advisor(
    counters: PartitionCounters,
    partition: int,
    tenant_id: str,
    window: Span,
    timezone: str,
    cutoffs: Sequence[float],
) -> tuple[list[int], list[int]] | None:
    """`advisor` from the tallies, or None when they cannot answer."""
    found = _tallied(counters, partition, tenant_id, window, timezone)
    if found is None:
        return None
    tally, tenant_tallies = found
    return tallies.advisor_counts(tally, tenant_tallies.months, timezone, cutoffs)
