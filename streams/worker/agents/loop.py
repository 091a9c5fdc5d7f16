"""The loop every agent runs: take a group of events, apply them into one batch, then ack.

faust acks an event in a `finally` when the agent moves on, even when the handler raised or was
cancelled, and then commits its offset. So the agents take events with `noack_take` and ack them
themselves, only after `apply_events` (streams/stages/loop.py) made the batch durable: an event
is never committed before what it caused is in Kafka. Taking events in groups also amortises
the flush (one round trip to Kafka for up to `max_events` commands).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn

from faust.types import EventT, StreamT

from streams.stages import metrics
from streams.stages.batch import DurableBatch
from streams.stages.loop import apply_events
from streams.stages.store import Batch, Fenced, LocalWriteFailed, OutputRepair, Record
from streams.worker.app import ownership
from streams.worker.runtime import new_batch

log = logging.getLogger(__name__)

Handler = Callable[[Batch, Record], Awaitable[None]]
GiveUp = Callable[[Batch, Record, BaseException], Awaitable[None] | None]

MAX_EVENTS = 64
# faust's take hands over a group when it holds MAX_EVENTS or every WITHIN_S, whether events
# came or not: a command waits for the next hand-over, and an idle agent wakes up that often.
# 20 ms against the former 50: p50 / p99 launch -> count at 10,000 launches/s 0.62-0.66 /
# 1.05-1.12 s against 0.77 / 1.23-1.24 s, the same CPU under load and the same throughput, a
# worker at rest 4.5 % of a core against 2.8 % (docs/benchmarks.md, the session of 2026-12-06
# from 19:06)
WITHIN_S = 0.02


def record_of(event: EventT) -> Record:
    message = event.message
    return Record(
        message.key,
        message.value,
        message.topic,
        message.partition,
        message.offset,
        int(message.timestamp * 1000),
    )


async def _pause(tries: int) -> None:
    await asyncio.sleep(0.5 * tries)


async def run_durably(
    stream: StreamT,
    stage: str,
    handle: Handler | None = None,
    give_up: GiveUp | None = None,
    max_events: int = MAX_EVENTS,
    repair_outputs: OutputRepair | None = None,
    handle_group: Callable[[DurableBatch, list[Record]], Awaitable[None]] | None = None,
    outputs_first: bool = True,
    owner: str | None = None,
    on_fenced: Callable[[], Awaitable[None]] | None = None,
    split: Callable[[Record], Sequence[Record]] | None = None,
    took: Callable[[int, int], None] | None = None,
) -> None:
    """Apply events group by group; ack a group only once it is durable.

    `took(events, max_events)`: told the size of every group as it is taken (a full one means
    more events are waiting).

    `split`: the parts of an event, applied one at a time once it failed
    (streams/stages/loop.py).

    `on_fenced`: what the stage does when a flush finds it was deposed. The owning stages give
    all their partitions up and ask for a rebalance: faust commits an acknowledged offset past
    a single unacknowledged one before it, so later events of a fenced partition must be left
    too, until the rebalance's takeover.

    `owner`: the stage whose partitions the events are (learner or tenant). Events of a
    partition it does not own (its takeover was refused: this process was deposed, and the
    rebalance that follows takes it over again) are left unacknowledged, as a `Fenced` flush
    leaves them, for the partition's owner to apply."""
    apply_group = functools.partial(
        _apply_group,
        stage=stage,
        handle=handle,
        give_up=give_up,
        split=split,
        repair_outputs=repair_outputs,
        handle_group=handle_group,
        outputs_first=outputs_first,
        owner=owner,
    )
    # partitions (topic, partition, generation) whose events this loop left unacknowledged:
    # faust commits an acknowledged offset past unacknowledged ones before it (and past any
    # number once a revocation popped the partition's committed offset), so no later event of
    # such a partition may be acknowledged in that generation
    left: set[tuple[str, int, int]] = set()
    async for events in stream.noack_take(max_events, within=WITHIN_S):  # type: ignore[attr-defined]
        if took is not None:
            took(len(events), max_events)
        if left:  # a later generation's events: what earlier ones left is its owners' now
            newest = max(_where(event)[2] for event in events)
            left = {where for where in left if where[2] >= newest}
        if _revoking(stream) or any(_where(event) in left for event in events):
            # handed out before faust's flow control was suspended (the event `noack_take`
            # took while the previous group was applied): left to the partition's next owner,
            # as faust's streams drop what they would hand out now; applied, its send (begun
            # during the revocation) would be retried until the generation changes, which the
            # revocation, waiting for it, never lets happen
            applied: bool | None = False
        else:
            applied = await _apply_until_done(stream, events, stage, apply_group)
        if applied:
            for event in events:
                await stream.ack(event)
        else:
            left.update(_where(event) for event in events)
            leave_unacknowledged(stream, events)
        del events
        if applied is None and on_fenced is not None:
            await on_fenced()


def _where(event: EventT) -> tuple[str, int, int]:
    message = event.message
    return message.topic, message.partition, getattr(message, "generation_id", None) or 0


async def _apply_until_done(
    stream: StreamT,
    events: list[EventT],
    stage: str,
    apply_group: Callable[[list[EventT]], Awaitable[bool | None]],
) -> bool | None:
    """`apply_group` (`_apply_group` with the stage's arguments), again and again while it
    raises: a group is never passed over.

    An exception that escapes a group (a flush that Kafka or RocksDB failed for good, the
    group's own or one a handler made; not an event's handler: those are caught per event)
    would end the agent. faust then starts the
    actor again (`Agent._execute_actor`) and acknowledges the groups after this one, while this
    group's messages are never acknowledged; and faust commits an acknowledged offset past
    unacknowledged ones before it: past a single one, and past any number when the partition's
    committed offset is 0 or none (`Consumer._new_offset`, `perform_seek`). Its commands would
    be committed unapplied, and the purge would delete them. Applying a group again is safe
    (every transition is idempotent); at shutdown or in a rebalance the group is left
    unacknowledged."""
    failures = 0
    while True:
        try:
            return await apply_group(events)
        except LocalWriteFailed:
            # applied again, the batch would find its tables partly written and leave the
            # counters behind them: a restart's takeover rebuilds them from the tables
            stop_for_failed_local_write(stage)
        except Exception:
            failures += 1
            log.exception(
                "%s: a group of %d events failed (%d times in a row); applying it again",
                stage,
                len(events),
                failures,
            )
            metrics.stage_errors_total.labels(stage).inc()
            if stream.should_stop or _revoking(stream):
                return False
            await asyncio.sleep(min(RETRY_FIRST_S * 2 ** (failures - 1), RETRY_MAX_S))


def _revoking(stream: StreamT) -> bool:
    """Whether faust is revoking partitions (its flow control is suspended from the start of a
    revocation until the recovery that follows resumes it; meanwhile its streams drop what
    they would hand out, and afterwards they drop the old generation's events).

    The revocation waits until every event handed out is acknowledged (`Consumer.wait_empty`,
    without a timeout): a group retried on through it, failing each time, would hold the whole
    consumer group's rebalance. Left unacknowledged, it is read again by the partition's next
    owner (this process, when it keeps the partition: faust seeks to the committed offset)."""
    flow = getattr(stream.app, "flow_control", None)
    return flow is not None and not flow.is_active()


RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
EXIT_LOCAL_WRITE_FAILED = 70  # EX_SOFTWARE: a supervisor restarts the worker


def stop_for_failed_local_write(what: str) -> NoReturn:
    """Stop the worker at once (called while `LocalWriteFailed` is handled, so its traceback is
    logged): no flush, no commit, so the restart's takeover rebuilds from the tables."""
    log.critical("%s: a local table write failed; stopping the worker", what, exc_info=True)
    os._exit(EXIT_LOCAL_WRITE_FAILED)


def leave_unacknowledged(stream: StreamT, events: list[EventT]) -> None:
    """Events left to their partition's owner: neither acknowledged (their offsets are never
    committed, so the partition's next owner reads them again) nor waited for.

    faust's revocation waits until every message it handed out is acknowledged or garbage
    (`Consumer.wait_empty`), and its stream keeps a reference to the last event it handed out
    until the next one; during a rebalance no next one comes. Found by a clean-clone CI run: a
    worker whose first takeover was refused hung in its next rebalance for good. So the
    messages are taken out of what faust waits for (its `_unacked_messages`, faust-streaming
    0.15 as pinned in pyproject.toml)."""
    unacked = stream.app.consumer._unacked_messages  # type: ignore[attr-defined]
    for event in events:
        unacked.discard(event.message)


async def _apply_group(
    events: list[EventT],
    stage: str,
    handle: Handler | None,
    give_up: GiveUp | None,
    split: Callable[[Record], Sequence[Record]] | None,
    repair_outputs: OutputRepair | None,
    handle_group: Callable[[DurableBatch, list[Record]], Awaitable[None]] | None,
    outputs_first: bool,
    owner: str | None,
) -> bool | None:
    """Apply a group of events into one batch; True once it is durable, False when the events
    are left to their partitions' owner, None when a flush found this process deposed."""
    records = [record_of(event) for event in events]
    if owner is not None:
        unowned = sorted({r.partition for r in records if not ownership.owns(owner, r.partition)})
        if unowned:
            log.warning(
                "%s: partitions %s are not owned here (a takeover refused or under way); "
                "%d events left to their owner",
                stage,
                unowned,
                len(events),
            )
            return False
    batch = new_batch(repair_outputs, outputs_first)
    try:
        if handle_group is not None:
            await handle_group(batch, records)
        else:
            assert handle is not None and give_up is not None
            await apply_events(
                batch,
                records,
                handle,
                give_up,
                stage,
                describe=Record.position,
                pause=_pause,
                split=split,
            )
    except Fenced as exc:
        # Deposed: the events stay unacknowledged and their new owner applies them.
        log.warning("%s: %s; %d events left to the new owner", stage, exc, len(events))
        return None
    return True
