"""Handling a group of input events into one batch: each event whole or not at all, one flush.

A flush that a handler makes itself (a tick, a lineage check, a deletion's chunks) and that
fails is not the event's failure: it took the group's earlier events with it, so it fails the
group (`RecordTooLarge` as below; anything else propagates, and the caller applies the group
again or, for `LocalWriteFailed`, stops).

An event whose handler raises leaves nothing behind: its writes, outputs and callbacks are
rolled back to where it started, and it is tried again (a transient failure passes). After
MAX_TRIES it is given up whole: `give_up` dead-letters it, with the error, so nothing is lost
silently and the stage goes on. `Fenced` is not a failure of the event: it propagates, and the
caller acknowledges nothing.

An event that carries the inputs of many (a learner command: the launches of many tenants'
learners; a `partials` command: many tenants' counts) can name its parts (`split`): when it
fails, its parts are applied one at a time at once, in order, each tried MAX_TRIES times and
given up alone, so that only the part that keeps failing is dead-lettered and the others count.
Each part that fails has the caller's pauses, as any event has: a passing failure (a
partition's database reopened) is waited out whichever part it strikes (two reviews found
parts tried without pauses, or sharing one event's pauses: a failure of a few milliseconds
dead-lettered every later launch of a command). A group pauses MAX_GROUP_PAUSES times at most
in all, so that parts that keep failing (a bug that fails many launches of many commands) hold
the agent's partitions for seconds a group, not minutes (a third review: 64 commands of six
such launches paused 480 s with a bound per command).

When Kafka refuses a record of the flush for its size, the events are handled again one at a
time, each flushed on its own (and an event with parts, part by part), so that the one that
wrote it is given up and the others pass: a record Kafka refuses never blocks a stage.

Callers (the faust agents, the launch reader, the simulator) acknowledge or commit the events
only after `apply_events` returned.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from streams.stages import metrics
from streams.stages.batch import DurableBatch
from streams.stages.store import Batch, Fenced, RecordTooLarge

log = logging.getLogger(__name__)

MAX_TRIES = 3
# pauses of one group of events in all, whichever events or parts fail and however often the
# group is applied (a try pauses 0.5 s, the next 1 s in the agents: 10 pauses are 7.5 s at
# most): parts that keep failing hold the agent's partitions for seconds a group
MAX_GROUP_PAUSES = 10

E = TypeVar("E")
Handler = Callable[[Batch, E], Awaitable[None]]
# (a learner's give-up awaits: a large launch's dead letter reads the launch back from Kafka)
GiveUp = Callable[[Batch, E, BaseException], Awaitable[None] | None]
Split = Callable[[E], Sequence[E]]


async def _no_pause(tries: int) -> None:
    return None


async def apply_events(
    batch: DurableBatch,
    events: Sequence[E],
    handle: Handler[E],
    give_up: GiveUp[E],
    stage: str,
    describe: Callable[[E], str] = repr,
    pause: Callable[[int], Awaitable[None]] = _no_pause,
    split: Split[E] | None = None,
) -> None:
    """Handle `events` in order into `batch`, then make it durable (see the module doc)."""
    pauses = _GroupPauses(pause)
    try:
        for event in events:
            await _apply_one(batch, event, handle, give_up, stage, describe, pauses, split)
        await batch.flush()
    except RecordTooLarge as exc:
        # (from the group's flush, or from one a handler made: a tick, a deletion's chunk)
        log.warning("%s: Kafka refused a record of a group (%s); one event at a time", stage, exc)
        for event in events:
            await _apply_alone(batch, event, handle, give_up, stage, describe, pauses, split)


async def _apply_alone(
    batch: DurableBatch,
    event: E,
    handle: Handler[E],
    give_up: GiveUp[E],
    stage: str,
    describe: Callable[[E], str],
    pause: Callable[[int], Awaitable[None]],
    split: Split[E] | None,
) -> None:
    """Apply one event and flush it on its own. Refused for its size, an event with parts has
    each part go the same way (only the part that wrote the record is given up, not the
    launches or tenants sent with it); one without is given up."""
    try:
        await _apply_one(batch, event, handle, give_up, stage, describe, pause, split)
        await batch.flush()
        return
    except RecordTooLarge as refused:
        parts = _parts(event, split, stage, describe)
        if len(parts) > 1:
            metrics.stage_splits_total.labels(stage).inc()
            for part, described in _described(parts, describe):
                await _apply_alone(batch, part, handle, give_up, stage, described, pause, None)
            return
        await _give_up(batch, event, refused, give_up, stage, describe)
    try:
        await batch.flush()
    except RecordTooLarge:
        # even its dead letter is refused (a broker limit far below 1 MiB): said loudly and
        # counted, and the stage goes on
        log.error(
            "%s: %s could not be dead-lettered either: Kafka refuses its records for their "
            "size (check the topics' max.message.bytes)",
            stage,
            describe(event),
        )
        metrics.stage_errors_total.labels(stage).inc()


async def _apply_one(
    batch: DurableBatch,
    event: E,
    handle: Handler[E],
    give_up: GiveUp[E],
    stage: str,
    describe: Callable[[E], str],
    pause: Callable[[int], Awaitable[None]],
    split: Split[E] | None = None,
) -> None:
    for tries in range(1, MAX_TRIES + 1):
        mark = batch.savepoint()
        try:
            await handle(batch, event)
            return
        except Fenced:
            raise
        except Exception as exc:
            batch.rollback(mark)
            if exc is getattr(batch, "flush_error", None):
                # A flush the handler made failed (a tick, a lineage check, a deletion's
                # chunks): it took the group's earlier events out of the batch, and may have
                # written them in part (LocalWriteFailed). Retried or dead-lettered here, the
                # event would pass and the group be acknowledged without them: it is the
                # group's failure (the agents apply the group again, or stop the worker).
                raise
            if tries == 1:
                parts = _parts(event, split, stage, describe)
                if len(parts) > 1:
                    log.warning(
                        "%s: %s failed (%s: %s); its %d parts one at a time",
                        stage,
                        describe(event),
                        type(exc).__name__,
                        exc,
                        len(parts),
                    )
                    metrics.stage_splits_total.labels(stage).inc()
                    for part, described in _described(parts, describe):
                        await _apply_one(batch, part, handle, give_up, stage, described, pause)
                    return
            if tries == MAX_TRIES:
                await _give_up(batch, event, exc, give_up, stage, describe)
                return
            log.warning(
                "%s: %s failed (%s: %s); trying again",
                stage,
                describe(event),
                type(exc).__name__,
                exc,
            )
            metrics.stage_retries_total.labels(stage).inc()
            await pause(tries)


class _GroupPauses:
    """The caller's pauses for one group's tries, MAX_GROUP_PAUSES at most; past that, events
    and parts are tried again without pauses (a failure that has lasted that long while a
    group was applied is not a passing one)."""

    def __init__(self, pause: Callable[[int], Awaitable[None]]) -> None:
        self.pause = pause
        self.left = MAX_GROUP_PAUSES

    async def __call__(self, tries: int) -> None:
        if self.left:
            self.left -= 1
            await self.pause(tries)


def _described(
    parts: Sequence[E], describe: Callable[[E], str]
) -> list[tuple[E, Callable[[E], str]]]:
    """Each part with how its logs name it: the event's position, and which part it is."""

    def part_of(number: int) -> Callable[[E], str]:
        return lambda part: f"{describe(part)} (part {number} of {len(parts)})"

    return [(part, part_of(number)) for number, part in enumerate(parts, 1)]


def _parts(event: E, split: Split[E] | None, stage: str, describe: Callable[[E], str]) -> list[E]:
    """The parts of `event` (none when it has no `split`, or its split fails: the event that
    could not be handled may be one that cannot be taken apart either)."""
    if split is None:
        return []
    try:
        return list(split(event))
    except Exception:
        log.exception("%s: %s could not be split into its parts", stage, describe(event))
        return []


async def _give_up(
    batch: DurableBatch,
    event: E,
    exc: BaseException,
    give_up: GiveUp[E],
    stage: str,
    describe: Callable[[E], str],
) -> None:
    log.error(
        "%s: %s failed %d times; dead-lettered whole",
        stage,
        describe(event),
        MAX_TRIES,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    metrics.stage_errors_total.labels(stage).inc()
    mark = batch.savepoint()
    try:
        given = give_up(batch, event, exc)
        if given is not None:
            await given
    except Exception:
        batch.rollback(mark)
        log.exception("%s: could not even dead-letter %s", stage, describe(event))
