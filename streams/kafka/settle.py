"""Waiting until a deployment has processed everything written to its inputs so far.

Settled means: the app's consumer group has committed every offset of its input and internal
topics, and the counts topic has not grown for `quiet_s` seconds (the partial-count timer and
the tenant stage have had their say). A learner stage commits a command once applied, while
its partial counts wait for the timer: up to PARTIALS_INTERVAL_MS, and one more when a tick
comes a little late and finds them not yet due (streams/worker/partials_pace.py). So the
quiet is at least twice that interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    NotCoordinatorError,
)

from schemas import topics
from streams.config.settings import Settings
from streams.kafka.admin import admin_client

# Which consumer group reads which topics: faust's group (the app id) reads the stages' inputs;
# the bulk launch reader has a group of its own.
WATCHED = {
    "": (
        topics.LICENSES,
        topics.ATTEMPT_DELETIONS,
        topics.LEARNER_GROUPS,
        topics.LEARNER_COMMANDS,
        topics.TENANT_COMMANDS,
    ),
    "-launches": (topics.LAUNCHES,),
}


def group_lag(settings: Settings, timeout_s: float = 15.0, memo: MarkersMemo | None = None) -> int:
    """Records of the watched topics that the app's consumer groups have not committed yet.
    Whether what is left is only markers and aborted records is asked of every partition when
    all are within MARKERS_AT_MOST of their end, and with a `memo` of the rounds before, of a
    partition whose span stood still since the last round, however far."""
    admin = admin_client(settings, timeout_s)
    consumer = _committed_reader(settings)
    try:
        short: dict[TopicPartition, tuple[int, int]] = {}
        for suffix, names in WATCHED.items():
            group = settings.app_id + suffix
            committed = committed_offsets(admin, group)
            tps = []
            for name in names:
                real = settings.topic(name)
                for partition in consumer.partitions_for_topic(real) or ():
                    tps.append(TopicPartition(real, partition))
            ends = consumer.end_offsets(tps)
            for tp in tps:
                done = committed.get(tp)
                start = done.offset if done is not None and done.offset >= 0 else 0
                if start < ends[tp]:
                    short[tp] = (start, ends[tp])
        # a partition far behind has records to process whatever the markers: nothing read
        # then (a bench polls this every second through a backlog)
        near = short and max(end - start for start, end in short.values()) <= MARKERS_AT_MOST
        stuck = memo.to_ask(short) if memo is not None else {}
        if near:
            unreadable = markers_only(consumer, short)
        else:
            if stuck and memo is not None:
                memo.found(stuck, markers_only(consumer, stuck))
            unreadable = memo.markers_in(short) if memo is not None else set()
        return sum(end - start for tp, (start, end) in short.items() if tp not in unreadable)
    finally:
        consumer.close()
        admin.close()


# A consumer group short of the end by at most this many offsets in every partition is asked
# whether what is left is only transaction markers (a few a partition) and aborted records.
MARKERS_AT_MOST = 100


def markers_only(
    consumer: KafkaConsumer, short: dict[TopicPartition, tuple[int, int]], timeout_s: float = 5.0
) -> set[TopicPartition]:
    """Of the partitions whose committed offset is short of their end (`short`: tp -> (committed,
    end)), those with no record a reader gets in between: a transactional producer's commit and
    abort markers take offsets of their own, and an aborted transaction's records are never
    read, so a consumer group that processed everything may stay short of the end for good."""
    consumer.assign(list(short))
    for tp, (start, _) in short.items():
        consumer.seek(tp, start)
    pending, found = set(short), set()
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for tp in consumer.poll(timeout_ms=200, max_records=len(short)):
            pending.discard(tp)  # a record to process: short for real
            consumer.pause(tp)
        for tp in list(pending):
            if consumer.position(tp) >= short[tp][1]:
                pending.discard(tp)
                found.add(tp)
    return found


class MarkersMemo:
    """Which partitions short of their end hold only transaction markers and aborted records
    there, asked once a span has stood still for a round (a backlog being processed moves, and
    is never read) and believed while the span stays the same."""

    def __init__(self) -> None:
        self.short: dict[TopicPartition, tuple[int, int]] = {}  # the last round's spans
        self.markers: dict[TopicPartition, tuple[int, int]] = {}  # proven spans

    def to_ask(
        self, short: dict[TopicPartition, tuple[int, int]]
    ) -> dict[TopicPartition, tuple[int, int]]:
        """This round's spans (`short`: tp -> (committed, end)); returns those to ask about."""
        stuck = {
            tp: span
            for tp, span in short.items()
            if self.short.get(tp) == span and self.markers.get(tp) != span
        }
        self.short = dict(short)
        self.markers = {tp: span for tp, span in self.markers.items() if short.get(tp) == span}
        return stuck

    def found(
        self, asked: dict[TopicPartition, tuple[int, int]], markers: set[TopicPartition]
    ) -> None:
        self.markers.update((tp, span) for tp, span in asked.items() if tp in markers)

    def markers_in(self, short: dict[TopicPartition, tuple[int, int]]) -> set[TopicPartition]:
        return {tp for tp, span in short.items() if self.markers.get(tp) == span}


def _committed_reader(settings: Settings) -> KafkaConsumer:
    # read_committed, as the service reads: the end offsets are the last stable ones (a
    # transaction still open is not there to be processed yet)
    return KafkaConsumer(
        **settings.kafka_python(),
        isolation_level="read_committed",
        max_partition_fetch_bytes=64 * 1024,  # (markers_only needs one record a partition)
        # a committed offset below the log's start (retention, a group's offsets expired):
        # read on from the start, where kafka-python's default jumped to the end, and a
        # backlog read as "markers only" (helper-111)
        auto_offset_reset="earliest",
    )


def markers_only_of(
    settings: Settings, short: dict[TopicPartition, tuple[int, int]]
) -> set[TopicPartition]:
    """`markers_only` with a consumer of its own (the read model's lag gauge asks it)."""
    consumer = _committed_reader(settings)
    try:
        return markers_only(consumer, {TopicPartition(*tp): span for tp, span in short.items()})
    finally:
        consumer.close()


def committed_offsets(admin: Any, group: str, attempts: int = 30) -> dict:
    """A group's committed offsets; waits while a restarted broker loads its coordinators."""
    for attempt in range(attempts):
        try:
            return admin.list_group_offsets(group).get(group, {})
        except (NotCoordinatorError, CoordinatorLoadInProgressError, CoordinatorNotAvailableError):
            if attempt == attempts - 1:
                raise
            time.sleep(1.0)
    return {}


def end_offset(settings: Settings, topic: str) -> int:
    """How many records were ever written to a topic (the sum of its partitions' end offsets)."""
    consumer = KafkaConsumer(**settings.kafka_python())
    try:
        name = settings.topic(topic)
        tps = [TopicPartition(name, p) for p in consumer.partitions_for_topic(name) or ()]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


QUIET_S = 3.0


def wait_until_settled(
    settings: Settings,
    timeout_s: float = 300.0,
    quiet_s: float | None = None,
    progress: Callable[[int], None] | None = None,
    progress_every_s: float = 10.0,
) -> float:
    """Block until settled; returns the seconds waited. Raises TimeoutError at the deadline."""
    if quiet_s is None:
        quiet_s = max(QUIET_S, 2 * settings.partials_interval_ms / 1000)
    started = time.monotonic()
    deadline = started + timeout_s
    last_end, quiet_since = -1, time.monotonic()
    next_progress = started + progress_every_s
    broker_s = min(timeout_s, 15.0)  # no broker: told within the timeout asked for
    # (an aborted transaction of thousands of records at the end of a partition held it for
    # good: what is left is asked about once a partition's span stands still)
    memo = MarkersMemo()
    while time.monotonic() < deadline:
        lag = group_lag(settings, broker_s, memo)
        end = end_offset(settings, topics.ACTIVE_LEARNER_COUNTS)
        if progress is not None and time.monotonic() >= next_progress:
            progress(lag)
            next_progress += progress_every_s
        if end != last_end or lag > 0:
            last_end, quiet_since = end, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return time.monotonic() - started
        time.sleep(0.5)
    raise TimeoutError(f"not settled after {timeout_s:g}s (lag {group_lag(settings, broker_s)})")
