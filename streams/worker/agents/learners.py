"""The learner stage in the worker: an agent on learner-commands, its takeover, its timer.

The stage itself is streams/stages/learners.py; this module only moves data between faust and
it: events into batches, assigned partitions into a takeover, a timer into partial counts.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from faust.types import StreamT

from schemas import topics
from streams.stages import commands, metrics
from streams.stages.learners import LearnerStage, send_partials
from streams.stages.store import LEARNER, Fenced
from streams.stages.takeover_steps import take_over_learners
from streams.worker import takeovers
from streams.worker.agents.loop import run_durably
from streams.worker.agents.purge import purge
from streams.worker.agents.timers import survives
from streams.worker.app import app, kafka_log, ownership, settings
from streams.worker.backlog import learner_backlog
from streams.worker.channels import learner_commands
from streams.worker.raw_fetch import fetch_raw
from streams.worker.runtime import new_batch, partials_pace
from streams.worker.tables import learner_state

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 15.0


async def _read_raw(topic: str, partition: int, offset: int) -> bytes | None:
    return await fetch_raw(settings, topic, partition, offset)


def _backlog(partition: int) -> AsyncIterator[list[bytes | None]]:
    return learner_backlog(settings, kafka_log, purge.admin, partition)


stage = LearnerStage(settings.partitions, read_raw=_read_raw, backlog=_backlog)


@app.agent(learner_commands)
async def learners(stream: StreamT) -> None:
    await run_durably(
        stream,
        "learners",
        stage.handle_record,
        stage.give_up,
        owner=LEARNER,
        on_fenced=give_up_partitions,
        split=stage.split,
        took=functools.partial(partials_pace.took, "learner stage"),
    )


# The stage topics of faust's consumer (licenses, deletions, groups, the internal commands).
STAGE_INPUTS = (
    topics.LICENSES,
    topics.ATTEMPT_DELETIONS,
    topics.LEARNER_GROUPS,
    topics.LEARNER_COMMANDS,
    topics.TENANT_COMMANDS,
)


@learner_state.on_recover
async def seek_fresh_partitions() -> None:
    """Read a partition without a committed offset from its start.

    After a rebalance faust seeks every partition to its committed offset; aiokafka skips a
    partition whose committed offset is none or 0, leaving it where its fetcher was, and faust
    drops the records that fetcher brought during the rebalance (a stale generation). So the
    first records of a fresh partition could be lost. This runs before faust's seek.
    """
    inputs = {settings.topic(name) for name in STAGE_INPUTS}
    consumer: Any = app.consumer  # faust's Consumer (the ConsumerT protocol lacks this method)
    committed = await consumer.seek_to_committed()
    for tp in app.consumer.assignment():
        if tp.topic in inputs and not committed.get(tp):
            await app.consumer.seek(tp, 0)


@learner_state.on_recover
async def take_over_learner_partitions() -> None:
    """Own the restored learner partitions under new epochs and rebuild their counters (the
    rules of streams/worker/takeovers.py)."""
    plan = takeovers.restored(learner_state)
    if plan is None:
        log.info("learner takeover: a later rebalance has begun; its recovery takes over")
        return
    generation, assigned = plan
    release_partitions()

    async def steps() -> None:
        await take_over_learners(
            stage,
            new_batch(),
            kafka_log,
            assigned,
            generation,
            takeovers.still_member,
            takeovers.superseded,
        )

    await takeovers.run(LEARNER, generation, steps, release_partitions)


def release_partitions() -> None:
    stage.release()
    ownership.release(LEARNER)


async def give_up_partitions() -> None:
    await takeovers.give_up(LEARNER, release_partitions)


@app.task
async def partial_counts() -> None:
    """Every tick, the partial counts that are due (streams/worker/partials_pace.py): a loop
    of its own, not an `app.timer`, whose next tick comes an interval after a send that
    waited for Kafka (so reports came up to 40 % late), and which warns of every send that
    outlasts a tick."""
    while not app.should_stop:
        await app.sleep(partials_pace.tick_s)
        if app.should_stop:
            break  # (the sleep ends when the app stops: no report while its parts stop)
        await flush_partial_counts()


@survives("partials")
async def flush_partial_counts() -> None:
    now = time.monotonic()
    if not partials_pace.due(now):
        return
    taken = False

    def on_taken() -> None:
        nonlocal taken
        taken = True
        partials_pace.sent(now)

    try:
        # (taken from the counters as sent: after a failure, the next interval sends them
        # again, `survives`)
        sent = await send_partials(stage, new_batch, on_taken=on_taken)
    except Fenced as exc:
        # a rebalance while the flush waited for Kafka: the next owner's timer sends it again
        log.warning("%s: %s", "flush_partial_counts", exc)
        return
    except Exception:
        if not taken:  # failed before it took any: tried again at the next slot, not tick
            partials_pace.sent(now)
        raise
    if sent:
        partials_pace.finished(time.monotonic())
    metrics.partials_total.inc(sent)


@app.timer(interval=CHECK_INTERVAL_S)
@survives("check")
async def check_learner_lineage() -> None:
    """Ask each owned learner partition to look for a deposed owner's late writes."""
    owned = ownership.partitions(LEARNER)
    if not owned:
        return
    batch = new_batch()
    for partition in owned:
        batch.emit(topics.LEARNER_COMMANDS, b"check", commands.encode(commands.Check()), partition)
    try:
        await batch.flush()
    except Fenced as exc:
        # a rebalance while the flush waited for Kafka: the next owner's timer sends it again
        log.warning("%s: %s", "check_learner_lineage", exc)
        return
