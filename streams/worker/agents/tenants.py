"""The tenant stage in the worker: an agent on tenant-commands, its takeover, its tick timer.

The stage itself is streams/stages/tenants.py.
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime

from faust.types import StreamT

from schemas import topics
from streams.stages import commands
from streams.stages.store import TENANT, Fenced
from streams.stages.takeover_steps import take_over_tenants
from streams.stages.tenants import TenantStage
from streams.worker import takeovers
from streams.worker.agents.loop import run_durably
from streams.worker.agents.timers import survives
from streams.worker.app import app, ownership, settings
from streams.worker.channels import tenant_commands
from streams.worker.runtime import new_batch
from streams.worker.tables import tenant_state

log = logging.getLogger(__name__)

TICK_INTERVAL_S = 15.0

stage = TenantStage(settings.partitions)


@app.agent(tenant_commands)
async def tenants(stream: StreamT) -> None:
    await run_durably(
        stream,
        "tenants",
        stage.handle_record,
        stage.give_up,
        repair_outputs=stage.repair_outputs,
        outputs_first=False,
        owner=TENANT,
        on_fenced=give_up_partitions,
        split=stage.split,
    )


@tenant_state.on_recover
async def take_over_tenant_partitions() -> None:
    """Own the restored tenant partitions under new epochs and answer what deposed owners left
    (the rules of streams/worker/takeovers.py)."""
    plan = takeovers.restored(tenant_state)
    if plan is None:
        log.info("tenant takeover: a later rebalance has begun; its recovery takes over")
        return
    generation, assigned = plan
    release_partitions()

    async def steps() -> None:
        await take_over_tenants(
            stage,
            new_batch(stage.repair_outputs, outputs_first=False),
            assigned,
            generation,
            takeovers.still_member,
            takeovers.superseded,
            functools.partial(datetime.now, UTC),
        )

    await takeovers.run(TENANT, generation, steps, release_partitions)


def release_partitions() -> None:
    ownership.release(TENANT)


async def give_up_partitions() -> None:
    await takeovers.give_up(TENANT, release_partitions)


@app.timer(interval=TICK_INTERVAL_S)
@survives("tick")
async def tick_new_windows() -> None:
    """Ask each tenant partition this worker owns to open windows that began by the wall clock
    (and to look for a deposed owner's late writes)."""
    owned = ownership.partitions(TENANT)
    if not owned:
        return
    command = commands.encode(commands.Tick(datetime.now(UTC).isoformat()))
    batch = new_batch()
    for partition in owned:
        batch.emit(topics.TENANT_COMMANDS, b"tick", command, partition)
    try:
        await batch.flush()
    except Fenced as exc:
        # a rebalance while the flush waited for Kafka: the next owner's timer sends it again
        log.warning("%s: %s", "tick_new_windows", exc)
        return
