"""A stage's takeover of the partitions a recovery restored, step by step: what the worker's
on_recover callbacks run (streams/worker/agents/learners.py and tenants.py, under the rules of
streams/worker/takeovers.py), and what the simulator runs as it is.

faust does not cancel an on_recover callback that a later rebalance interrupts, so a takeover
may go on after a newer one of the same process began. It stops between its steps once that
has happened (`superseded`), and its batch stops at the first send or write after it
(`DurableBatch.stop_when`, which raises `Fenced`): a stale takeover never writes a partition's
local rows, its lineage or its counters after the newer takeover restored them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime

from streams.stages.batch import DurableBatch, take_over
from streams.stages.learners import LearnerStage
from streams.stages.store import LEARNER, TENANT, Log, StillMember
from streams.stages.tenants import TenantStage

# whether a rebalance later than the generation given has begun, as this process sees it
Superseded = Callable[[int], bool]


async def take_over_learners(
    stage: LearnerStage,
    batch: DurableBatch,
    log_: Log,
    partitions: Sequence[int],
    generation: int,
    still_member: StillMember,
    superseded: Superseded,
) -> None:
    """Own the learner partitions under new epochs, repair what deposed owners left, rebuild
    their counters and hold their reports until their backlog is applied; nothing more once
    a later rebalance has begun (its takeover does it)."""
    batch.stop_when(
        functools.partial(superseded, generation), f"learner takeover of generation {generation}"
    )
    epochs = await take_over(batch, LEARNER, partitions, generation, still_member)
    if superseded(generation):
        return
    # keys whose last changelog record was a deposed owner's (skipped by the restore)
    await batch.repair_marked(LEARNER, partitions, stage.heal_marked)
    if superseded(generation):
        return
    stage.rebuild(batch, epochs)
    await stage.hold_until_replayed(
        batch, log_, partitions, functools.partial(superseded, generation)
    )


async def take_over_tenants(
    stage: TenantStage,
    batch: DurableBatch,
    partitions: Sequence[int],
    generation: int,
    still_member: StillMember,
    superseded: Superseded,
    clock: Callable[[], datetime],
) -> None:
    """Own the tenant partitions under new epochs, repair what deposed owners left and send
    each partition's counts and threshold events again; nothing more once a later rebalance
    has begun (its takeover does it)."""
    batch.stop_when(
        functools.partial(superseded, generation), f"tenant takeover of generation {generation}"
    )
    await take_over(batch, TENANT, partitions, generation, still_member)
    if superseded(generation):
        return
    # keys whose last changelog record was a deposed owner's (skipped by the restore), and
    # what those records published
    await batch.repair_marked(TENANT, partitions)
    now = clock()
    for partition in partitions:
        if superseded(generation):
            return
        await stage.take_over_outputs(batch, partition, now)
