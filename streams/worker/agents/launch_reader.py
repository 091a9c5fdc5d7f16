"""Ingest of `launches` in bulk: whole fetches in, one learner command per partition out.

faust spends ~0.1 ms of CPU on every message it hands to an agent (docs/benchmarks.md), which
alone caps a per-launch stream below 10,000 launches/s. This service of the app reads `launches`
with its own aiokafka consumer instead, in its own consumer group (`<app id>-launches`): it takes
whatever a fetch returns (up to INGEST_BATCH_MAX launches, lingering up to INGEST_LINGER_MS to
fill a batch),
validates every launch (streams/stages/ingest.py), sends one `Attempts` command per learner
partition
and the dead letters, waits until Kafka acknowledged all of them, and only then commits the
batch's offsets. A crash before the commit replays the batch; the learner stage is idempotent.
A batch that Kafka fails is read again; a launch that routing fails on (a bug) is dead-lettered
alone by the ingest stage, and a batch whose command Kafka refuses for its size (a topic whose
`max.message.bytes` is below the reader's commands) is routed again one launch at a time, so no
launch can hold the batch back for good. An error aiokafka hands to a fetch (its group
coordination's, for one) is logged and the fetch tried again: it never ends the reader.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError
from mode import Service

from schemas import topics
from streams.domain.decoding import Rejected
from streams.stages import ingest, metrics
from streams.stages.ingest import IngestStage, InputRecord
from streams.stages.loop import apply_events
from streams.stages.store import Batch, Fenced, RecordTooLarge
from streams.worker.app import app, settings
from streams.worker.runtime import new_batch, partials_pace

log = logging.getLogger(__name__)

stage = IngestStage(settings.partitions, topic_name=settings.topic)

MAX_RECORDS = settings.ingest_batch_max
LINGER_S = settings.ingest_linger_ms / 1000
RETRY_S = 2.0
STOP_WAIT_S = 10.0


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, reader: LaunchReader) -> None:
        self.reader = reader

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # Let the batch in flight finish and commit before the partitions move.
        async with self.reader.lock:
            self.reader.drop_pending(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("launch reader: %d partitions of launches assigned", len(assigned))
        try:
            await self.reader.report_expired(list(assigned))
        except KafkaError as exc:  # only a report: the partitions are read whatever it says
            log.warning("launch reader: could not compare offsets with retention: %s", exc)


@app.service
class LaunchReader(Service):
    """Reads `launches` in bulk and routes tracked launches to the learner partitions."""

    def __post_init__(self) -> None:
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self.pending: list[Any] = []
        self.reading: asyncio.Task[Any] | None = None  # the task of `_read`, once it runs

    @property
    def group_id(self) -> str:
        return f"{settings.app_id}-launches"

    async def on_start(self) -> None:
        log.log(*ingest.router_in_use())
        self.consumer = AIOKafkaConsumer(
            **settings.aiokafka(),
            group_id=self.group_id,
            client_id=f"{settings.app_id}-launch-reader",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",  # an aborted transaction's records are not read
            check_crcs=False,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=16 * 1024 * 1024,
            session_timeout_ms=15_000,
            heartbeat_interval_ms=3_000,
        )
        self.consumer.subscribe([settings.topic(topics.LAUNCHES)], listener=_Rebalance(self))
        await self.consumer.start()

    async def on_stop(self) -> None:
        # The batch in flight sends and commits first (up to STOP_WAIT_S): a consumer stopped
        # under it cannot commit, and the partitions' next owner routes the batch again
        # (counted once all the same, since the learner stage is idempotent, but sent twice).
        # The lock is not held while the consumer stops: aiokafka's stop awaits the group
        # coordination task (GroupCoordinator.close), which may be in `on_partitions_revoked`
        # waiting for this lock (a rebalance of the launch group as other workers stop).
        try:
            await asyncio.wait_for(self.lock.acquire(), STOP_WAIT_S)
        except TimeoutError:
            log.warning(
                "launch reader: the batch in flight did not finish within %.0f s; stopping "
                "without it (it will be read again)",
                STOP_WAIT_S,
            )
            # Cancelled, the batch lets the lock go: left running, it would hold the consumer's
            # stop too (its revocation callback waits for the lock).
            reading = self.reading
            if reading is not None and not reading.done():
                reading.cancel()
                await asyncio.wait({reading}, timeout=STOP_WAIT_S)
        else:
            self.lock.release()  # `_read` takes no batch after this: should_stop is set
        if self.consumer is not None:
            await self.consumer.stop()

    async def report_expired(self, assigned: list[TopicPartition]) -> None:
        """Say so when Kafka deleted launches of these partitions before this group read them
        (the topic's retention was shorter than the time the workers were stopped or behind):
        the consumer would start at the first record left without a word. They are gone; an
        operator can only raise the retention, and produce them again if the LMS still can."""
        assert self.consumer is not None
        firsts = await self.consumer.beginning_offsets(assigned)
        for tp in assigned:
            committed = await self.consumer.committed(tp)
            if committed is not None and committed < firsts[tp]:
                lost = firsts[tp] - committed
                metrics.launches_expired_total.inc(lost)
                log.error(
                    "launch reader: %d launches of %s/%d (offsets %d to %d) were deleted by "
                    "Kafka before they were read, and are not counted: the topic's retention "
                    "(retention.ms) is shorter than the workers were stopped or behind",
                    lost,
                    tp.topic,
                    tp.partition,
                    committed,
                    firsts[tp] - 1,
                )

    def drop_pending(self, revoked: set[TopicPartition]) -> None:
        """Fetched records of revoked partitions go: their new owner reads them again."""
        self.pending = [
            r for r in self.pending if TopicPartition(r.topic, r.partition) not in revoked
        ]

    @Service.task
    async def _read(self) -> None:
        self.reading = asyncio.current_task()
        while not self.should_stop:
            await self._fill()
            partials_pace.took("launch reader", len(self.pending), MAX_RECORDS)
            if not self.pending:
                continue
            async with self.lock:
                if self.should_stop:
                    return  # stopping: the pending records are read again by the next owner
                records, self.pending = self.pending, []
                if not records:
                    continue
                try:
                    await self.route(records)
                except Exception:
                    # Never skip a batch: read it again (routing is idempotent downstream).
                    log.exception("launch reader: routing %d launches failed", len(records))
                    metrics.stage_errors_total.labels("launch-reader").inc()
                    self.rewind(records)
                    await self.sleep(RETRY_S)

    async def _fill(self) -> None:
        """Fetch until MAX_RECORDS are pending or LINGER_S passed since the first arrived."""
        assert self.consumer is not None
        deadline: float | None = None
        while len(self.pending) < MAX_RECORDS:
            timeout_s = 1.0 if deadline is None else deadline - time.monotonic()
            if timeout_s <= 0:
                return
            if self.should_stop:
                return
            try:
                fetched = await self.consumer.getmany(
                    timeout_ms=int(timeout_s * 1000), max_records=MAX_RECORDS - len(self.pending)
                )
            except ConsumerStoppedError:
                if self.should_stop:
                    return  # `on_stop` stopped the consumer while this fetch lingered
                raise
            except KafkaError as exc:
                # aiokafka hands its group coordination's errors to the next fetch (a heartbeat
                # answered with a code it does not know while a broker restarts, for one): the
                # reader goes on, as faust's own consumer does
                log.warning("launch reader: fetching failed (%s); trying again", exc)
                metrics.stage_errors_total.labels("launch-reader").inc()
                await self.sleep(RETRY_S)
                return
            except Exception:
                # anything else out of a fetch (a codec's error on a batch it cannot decompress,
                # for one) is tried again too: ended, the reader would crash the worker with it,
                # and the tenant stage, deletions and the HTTP side with the launches
                log.exception("launch reader: fetching failed; trying again")
                metrics.stage_errors_total.labels("launch-reader").inc()
                await self.sleep(RETRY_S)
                return
            for records in fetched.values():
                self.pending.extend(records)
            if self.pending and deadline is None:
                deadline = time.monotonic() + LINGER_S
            if not self.pending:
                return

    async def route(self, records: list[Any]) -> None:
        assert self.consumer is not None
        batch = new_batch()
        try:
            try:
                # aiokafka's records have every field a stage reads (stages.ingest.InputRecord)
                outcomes = stage.route_launches(batch, records)
                await batch.flush()
            except RecordTooLarge as exc:
                log.warning(
                    "launch reader: Kafka refused a record of a batch of %d launches (%s); "
                    "one launch at a time",
                    len(records),
                    exc,
                )
                outcomes = await self._route_alone(new_batch(), records)
        except Fenced as exc:
            log.warning("launch reader: %s; the batch will be read again", exc)
            self.rewind(records)
            return
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        for outcome, n in outcomes.items():
            metrics.launches_total.labels(outcome).inc(n)
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:
            # Everything is in Kafka already; an uncommitted batch is read again (idempotent).
            log.warning("launch reader: commit failed (%s); the batch will be read again", exc)

    async def _route_alone(self, batch: Any, records: list[Any]) -> Counter[str]:
        """Each launch in a command of its own: the one whose command or dead letter Kafka
        refuses for its size is dead-lettered (or, refused even that, logged and counted in
        `stage_errors_total`), and the others are counted."""
        outcomes: Counter[str] = Counter()

        async def route_one(batch: Batch, record: InputRecord) -> None:
            routed = stage.route_launches(batch, [record])
            # counted once durable: a launch tried again, or handled again after its group's
            # flush was refused, is counted once
            batch.on_durable(lambda: outcomes.update(routed))

        def given_up(batch: Batch, record: InputRecord, exc: BaseException) -> None:
            detail = f"the service could not route this launch ({type(exc).__name__}: {exc})"
            stage.dead_letter(batch, record, Rejected("invalid", detail))  # (counted, durable)
            batch.on_durable(lambda: outcomes.update(("dead_lettered",)))

        await apply_events(
            batch,
            records,
            route_one,
            given_up,
            "launch-reader",
            describe=lambda r: f"the launch at {r.topic}/{r.partition}@{r.offset}",
        )
        return outcomes

    def rewind(self, records: list[Any]) -> None:
        assert self.consumer is not None
        first: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            first[tp] = min(first.get(tp, record.offset), record.offset)
        for tp, offset in first.items():
            if tp in self.consumer.assignment():
                self.consumer.seek(tp, offset)
