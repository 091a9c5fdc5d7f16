"""Commands the stages have consumed are deleted from Kafka, and only those.

`learner-commands` and `tenant-commands` keep every record until it is deleted here
(`retention.ms` -1, schemas/topics.py). With Kafka's default of a week, a stage that was down
or stuck for longer would find its oldest commands gone, and faust would start after them:
launches lost without a trace. So a timer deletes, in the partitions this worker is assigned,
the records below the app's committed offset: no one reads them again (a restart and the next
owner start there). Kafka Streams purges its repartition topics the same way.

It needs the DELETE permission on the two topics (an ACL, where the broker has them). Without
it nothing is deleted, the topics grow, and the log says so once a purge interval.
"""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from schemas import topics
from streams.stages import metrics
from streams.worker.agents.timers import survives
from streams.worker.app import app, settings

log = logging.getLogger(__name__)

PURGE_INTERVAL_S = 15.0
PURGED = frozenset(
    settings.topic(name) for name in (topics.LEARNER_COMMANDS, topics.TENANT_COMMANDS)
)


class Purge:
    def __init__(self) -> None:
        self._admin: AIOKafkaAdminClient | None = None
        self.below: dict[TopicPartition, int] = {}  # what was deleted already, per partition

    async def admin(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(**settings.aiokafka(request_timeout_ms=15_000))
            await admin.start()
            self._admin = admin
        return self._admin

    async def run(self) -> int:
        """Delete what the app committed in this worker's partitions; how many records."""
        assigned = [
            TopicPartition(tp.topic, tp.partition)
            for tp in app.consumer.assignment()
            if tp.topic in PURGED
        ]
        if not assigned:
            return 0
        admin = await self.admin()
        committed = await admin.list_consumer_group_offsets(settings.app_id, partitions=assigned)
        todo = {
            tp: RecordsToDelete(before_offset=meta.offset)
            for tp, meta in committed.items()
            if meta is not None and meta.offset > self.below.get(tp, 0)
        }
        if not todo:
            return 0
        deleted = 0
        for tp, low in (await admin.delete_records(todo)).items():
            deleted += max(low - self.below.get(tp, 0), 0)
            self.below[tp] = low
        return deleted


purge = Purge()


@app.timer(interval=PURGE_INTERVAL_S)
@survives("purge")
async def purge_consumed_commands() -> None:
    try:
        metrics.commands_purged_total.inc(await purge.run())
    except KafkaError as exc:
        # not fatal: the records stay until the next interval (or until the ACL allows it)
        log.warning("could not delete consumed commands from Kafka: %s", exc)
