"""The tenant stage in the worker: an agent on tenant-commands, its takeover, its tick timer.

The stage itself is streams/stages/tenants.py.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from faust.types import StreamT

from schemas import topics
from streams.stages import commands
from streams.stages.batch import take_over
from streams.stages.store import TENANT, Fenced
from streams.stages.tenants import TenantStage
from streams.worker.agents.loop import run_durably
from streams.worker.app import app, ownership, settings, still_member
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
    )


@tenant_state.on_recover
async def take_over_tenant_partitions() -> None:
    topic = tenant_commands.get_topic_name()
    assigned = sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic)
    ownership.release(TENANT)
    batch = new_batch(stage.repair_outputs, outputs_first=False)
    try:
        await take_over(batch, TENANT, assigned, app.consumer_generation_id, still_member)
        # keys whose last changelog record was a deposed owner's (skipped by the restore),
        # and what those records published
        await batch.repair_marked(TENANT, assigned)
        now = datetime.now(UTC)
        for partition in assigned:
            await stage.take_over_outputs(batch, partition, now)
    except Fenced as exc:
        log.warning("tenant takeover: %s", exc)


@app.timer(interval=TICK_INTERVAL_S)
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
    await batch.flush()
