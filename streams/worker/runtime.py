"""The worker's batches: the stages' Store over RocksDB and Kafka (streams/worker/state.py)."""

from __future__ import annotations

from mode import Service

from streams.stages import keys
from streams.stages.batch import DurableBatch
from streams.stages.store import OutputRepair
from streams.worker.app import app, input_log, kafka_log, ownership, settings
from streams.worker.partials_pace import PartialsPace
from streams.worker.state import RocksState
from streams.worker.tables import attempts, erasures, learner_groups, learner_state, tenant_state

local_state = RocksState(
    {
        keys.ATTEMPTS: attempts,
        keys.LEARNER_STATE: learner_state,
        keys.LEARNER_GROUPS: learner_groups,
        keys.ERASURES: erasures,
        keys.TENANT_STATE: tenant_state,
    }
)

# how often the learner stage sends partial counts: told by the readers whether they are behind
partials_pace = PartialsPace(keeping_up_s=settings.partials_interval_ms / 1000)


def new_batch(
    repair_outputs: OutputRepair | None = None, outputs_first: bool = True
) -> DurableBatch:
    """A batch of the learner stage or ingest (outputs first), or of the tenant stage
    (`outputs_first=False`: its state first, see streams/stages/tenants.py)."""
    return DurableBatch(local_state, kafka_log, ownership, repair_outputs, outputs_first)


def new_input_batch() -> DurableBatch:
    """A batch of input records written on a user's behalf (a deletion request of the HTTP API):
    a rebalance does not stop its flush (`input_log`)."""
    return DurableBatch(local_state, input_log, ownership)


@app.service
class LogReaderCloser(Service):
    """Closes the consumer KafkaLog opens to read records back (lineage checks) at shutdown."""

    async def on_stop(self) -> None:
        await kafka_log.stop()
