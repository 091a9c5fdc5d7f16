"""Producing JSON lines and reading topics back, with kafka-python (CLI, tests, benchmark)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schemas import topics
from streams.config.settings import Settings


def topic_of(record: dict[str, Any]) -> str:
    """Which input topic a record belongs to, from its fields."""
    if "request_id" in record:
        return topics.ATTEMPT_DELETIONS
    if "event_id" in record:
        return topics.LAUNCHES
    if "learner_id" in record and ("teams" in record or "roles" in record):
        return topics.LEARNER_GROUPS
    if (
        "cycle_start" in record
        or "window_months" in record
        or set(record) <= {"tenant_id", "learner_limit", "thresholds", "notify", "timezone"}
    ):
        return topics.LICENSES
    raise ValueError(
        "cannot tell the topic: no event_id, request_id, teams/roles or license fields"
    )


def key_of(topic: str, record: dict[str, Any]) -> bytes | None:
    """The recommended key: tenant/learner for launches and groups, tenant for the others.
    None for a record without a tenant id, or whose ids are no UTF-8 text (a JSON escape of a
    lone surrogate, `"\\ud800"`): it goes keyless, and the service dead-letters it."""
    tenant = record.get("tenant_id")
    if not isinstance(tenant, str):
        return None
    key = tenant
    if topic in (topics.LAUNCHES, topics.LEARNER_GROUPS) and isinstance(
        record.get("learner_id"), str
    ):
        key = f"{tenant}/{record['learner_id']}"
    try:
        return key.encode()
    except UnicodeEncodeError:
        return None


def new_producer(settings: Settings) -> KafkaProducer:
    return KafkaProducer(
        **settings.kafka_python(),
        acks="all",
        linger_ms=20,
        batch_size=256 * 1024,
        compression_type=None,
        max_request_size=2 * 1024 * 1024,
    )


def produce_records(
    settings: Settings,
    records: Iterable[tuple[str, bytes | None, bytes | None]],
    progress: Callable[[int], None] | None = None,
    partition_of: Callable[[tuple[str, bytes | None, bytes | None]], int] | None = None,
) -> int:
    """Send (topic without prefix, key, value) tuples; returns how many were sent.

    `partition_of` picks each record's partition (default: the client's partitioner).
    """
    producer = new_producer(settings)
    sent = 0
    refused: list[Exception] = []
    try:
        for record in records:
            topic, key, value = record
            partition = partition_of(record) if partition_of is not None else None
            future = producer.send(settings.topic(topic), key=key, value=value, partition=partition)
            future.add_errback(refused.append)
            sent += 1
            if progress is not None and sent % 50_000 == 0:
                progress(sent)
        producer.flush()
    finally:
        producer.close()
    if refused:
        raise ProduceError(
            f"Kafka refused {len(refused)} of {sent} records ({type(refused[0]).__name__}: "
            f"{str(refused[0]).splitlines()[0][:200]})"
        )
    return sent


class ProduceError(RuntimeError):
    """Records were refused by the broker (the message says how many and why)."""


def read_topic(
    settings: Settings, topic: str, timeout_s: float = 30.0
) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of a topic from the beginning to its end offsets at call time."""
    return [(r.key, r.value) for r in read_records(settings, topic, timeout_s)]


def read_records(settings: Settings, topic: str, timeout_s: float = 30.0) -> list[Any]:
    """Every record of a topic (kafka-python's, with partition, offset and timestamp) from the
    beginning to its end offsets at call time."""
    consumer = KafkaConsumer(
        **settings.kafka_python(),
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
        isolation_level="read_committed",  # as the service reads (streams/worker/transport.py)
    )
    try:
        name = settings.topic(topic)
        partitions = consumer.partitions_for_topic(name) or set()
        tps = [TopicPartition(name, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {name} took more than {timeout_s:g}s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def latest_by_key(records: Iterable[tuple[bytes | None, bytes | None]]) -> dict[bytes, Any]:
    """What a compacted topic holds: the last value per key, tombstones removing the key."""
    latest: dict[bytes, Any] = {}
    for key, value in records:
        if key is None:
            continue
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = json.loads(value)
    return latest


def current_counts(settings: Settings, timeout_s: float = 30.0) -> dict[tuple[str, str], dict]:
    """{(tenant, window start): count record} as the compacted counts topic holds them now."""
    latest = latest_by_key(read_topic(settings, topics.ACTIVE_LEARNER_COUNTS, timeout_s))
    return {(record["tenant_id"], record["window"]["start"]): record for record in latest.values()}
