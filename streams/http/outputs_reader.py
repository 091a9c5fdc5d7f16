"""Feeds the read model (streams/http/read_model.py) from the output topics, on every worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from mode import Service

from schemas import topics
from streams.domain.sources import position_of
from streams.http.gauges import TenantGauges, tenant_counts_changed
from streams.http.read_model import ReadModel
from streams.kafka.settle import MarkersMemo, markers_only_of
from streams.stages import metrics
from streams.worker.app import app, settings

log = logging.getLogger(__name__)

model = ReadModel()
model.on_counts = tenant_counts_changed(model)


def counts_changed() -> None:
    """Every tenant's gauges set again from the read model (streams/http/gauges.py)."""
    if isinstance(model.on_counts, TenantGauges):
        model.on_counts.refresh()


def flush_gauges() -> None:
    """The gauges of tenants whose counts changed since the last call set (before a scrape)."""
    if isinstance(model.on_counts, TenantGauges):
        model.on_counts.flush()


LAG_INTERVAL_S = 15.0
# which consumer group reads which input topic (faust's group is the app id)
INPUT_GROUPS = {
    "": (topics.LICENSES, topics.ATTEMPT_DELETIONS, topics.LEARNER_GROUPS),
    "-launches": (topics.LAUNCHES,),
}

SOURCES = {
    topics.LICENSES: lambda record: model.apply_license(
        record.key, record.value, position_of(record.partition, record.offset, record.timestamp)
    ),
    topics.ACTIVE_LEARNER_COUNTS: lambda record: model.apply_count(record.key, record.value),
    topics.DELETION_RECEIPTS: lambda record: model.apply_receipt(record.value),
    topics.THRESHOLD_EVENTS: lambda record: model.apply_event(record.value),
}


@app.service
class OutputsReader(Service):
    """All partitions of the output topics, from the beginning, with no consumer group."""

    def __post_init__(self) -> None:
        self.consumer: AIOKafkaConsumer | None = None
        self.admin: AIOKafkaAdminClient | None = None  # for the lag; made again after a failure
        self.applies: dict[str, Any] = {settings.topic(name): f for name, f in SOURCES.items()}
        self.markers = MarkersMemo()  # input partitions short of their end by markers only

    async def on_start(self) -> None:
        # No consumer group: the consumer is assigned every partition of what it subscribes to,
        # from the beginning.
        self.consumer = AIOKafkaConsumer(
            **settings.aiokafka(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",  # an aborted transaction's records are not read
            client_id=f"{settings.app_id}-read-model",
        )
        self.consumer.subscribe(list(self.applies))
        await self.consumer.start()
        self.end_at_start: dict[TopicPartition, int] | None = None

    async def on_stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        await self._drop_admin()

    async def _drop_admin(self) -> None:
        admin, self.admin = self.admin, None
        if admin is not None:
            with contextlib.suppress(Exception):  # closing a client that never connected
                await admin.close()

    @Service.timer(LAG_INTERVAL_S)
    async def _measure_lag(self) -> None:
        """Lag of every input topic: its end offsets less what its consumer group committed,
        but for what only transaction markers and aborted records fill."""
        assert self.consumer is not None
        counts_changed()  # the current window moves with the clock
        # A metric is never worth the worker: while the broker is away (or anything else goes
        # wrong) the gauges keep their last value and the log says why, once a round.
        try:
            if self.admin is None:
                self.admin = AIOKafkaAdminClient(**settings.aiokafka())
                await self.admin.start()
            short: dict[TopicPartition, tuple[int, int]] = {}
            topic_of: dict[TopicPartition, str] = {}
            for group, names in INPUT_GROUPS.items():
                committed = await self.admin.list_consumer_group_offsets(settings.app_id + group)
                for name in names:
                    topic = settings.topic(name)
                    tps = [
                        TopicPartition(topic, p)
                        for p in sorted(self.consumer.partitions_for_topic(topic) or ())
                    ]
                    ends = await self.consumer.end_offsets(tps) if tps else {}
                    for tp, end in ends.items():
                        done = committed.get(tp)
                        start = done.offset if done is not None and done.offset >= 0 else 0
                        topic_of[tp] = name
                        if start < end:
                            short[tp] = (start, end)
            # A transactional producer's commit and abort markers take offsets of their own,
            # and an aborted transaction's records are never read: a group that processed
            # everything stays short of the end by them for good. What is left of a partition
            # whose span stood still for a round is asked about (in a thread: kafka-python).
            stuck = self.markers.to_ask(short)
            if stuck:
                self.markers.found(stuck, await asyncio.to_thread(markers_only_of, settings, stuck))
            markers = self.markers.markers_in(short)
            lags = {name: 0 for names in INPUT_GROUPS.values() for name in names}
            for tp, (start, end) in short.items():
                if tp not in markers:
                    lags[topic_of[tp]] += end - start
            for name, lag in lags.items():
                metrics.consumer_lag.labels(name).set(lag)
        except Exception as exc:
            log.info("consumer lag not measured this time (%s: %s)", type(exc).__name__, exc)
            await self._drop_admin()

    async def reached_start_ends(self) -> bool:
        assert self.consumer is not None and self.end_at_start is not None
        for tp, end in self.end_at_start.items():
            if await self.consumer.position(tp) < end:
                return False
        return True

    @Service.task
    async def _read(self) -> None:
        # The reader outlives broker outages: a failed round is logged and tried again, it never
        # stops the worker (the agents, not the read model, are what the worker is for).
        while not self.should_stop:
            try:
                await self._read_once()
            except (KafkaError, OSError) as exc:
                log.warning("read model: %s: %s; reading again in 1 s", type(exc).__name__, exc)
                await self.sleep(1.0)
            except Exception:
                # anything else (a codec's error on a batch, a record no apply expected) the same
                # way, with its traceback: ended, this task would crash the worker
                log.exception("read model: reading failed; reading again in 1 s")
                await self.sleep(1.0)

    async def _read_once(self) -> None:
        assert self.consumer is not None
        fetched = await self.consumer.getmany(timeout_ms=500, max_records=10_000)
        for tp, records in fetched.items():
            apply = self.applies[tp.topic]
            for record in records:
                try:
                    apply(record)
                except Exception as exc:  # not the service's record: none of its fields trusted
                    log.warning(
                        "read model: skipped %s/%d@%d (%s)",
                        tp.topic,
                        tp.partition,
                        record.offset,
                        type(exc).__name__,
                    )
        assigned = self.consumer.assignment()
        # only once every output topic is assigned: aiokafka without a group assigns the
        # topics its metadata knows, and one it does not know yet (just created, no leader)
        # comes at a later update; end offsets of the others alone would say "caught up"
        # before one record of it is read (and the API answer a 200 from it)
        if self.end_at_start is None and {tp.topic for tp in assigned} >= set(self.applies):
            self.end_at_start = await self.consumer.end_offsets(list(assigned))
        if (
            not model.caught_up.is_set()
            and self.end_at_start is not None
            and await self.reached_start_ends()
        ):
            model.caught_up.set()
            counts_changed()  # the gauges wait for it
            log.info("read model: caught up (%d tenants)", len(model.tenants()))
