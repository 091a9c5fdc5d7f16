"""A topic whose `max.message.bytes` is below what the producer packs in a batch: the worker's
`KafkaLog` cuts that topic's batches smaller (`BatchCaps`, streams/stages/store.py) rather than
taking the refusal for a record too large; only a record refused alone is `RecordTooLarge`.
Through aiokafka's own batch builder (tests/unit/test_partials_batches.py's producer)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from streams.stages.store import PRODUCER_BATCH_BYTES, BatchCaps, RecordTooLarge
from streams.worker.state import KafkaLog
from tests.unit.test_partials_batches import BROKER_MAX_MESSAGE_BYTES, Producer


def test_a_refused_batch_of_many_records_halves_the_topics_cap() -> None:
    caps = BatchCaps()
    assert caps.cut("attempts", [300] * 10) == [(0, 10, 3_000)]
    assert caps.refused("attempts", 600_000, 2_000)
    assert caps.cap("attempts") == 300_000
    assert caps.cap("learner-state-changelog") == PRODUCER_BATCH_BYTES  # per topic
    batches = caps.cut("attempts", [300] * 2_000)
    assert [records for _, records, _ in batches] == [1_000, 1_000]
    assert [first for first, _, _ in batches] == [0, 1_000]
    assert all(size <= 300_000 for _, _, size in batches)


def test_a_record_refused_alone_is_too_large_and_the_cap_stays() -> None:
    caps = BatchCaps()
    assert not caps.refused("attempts", 600_000, 1)
    assert caps.cap("attempts") == PRODUCER_BATCH_BYTES


def test_refusals_come_down_to_one_record_a_batch() -> None:
    caps = BatchCaps()
    for _ in range(64):
        batches = caps.cut("attempts", [500] * 4)
        if len(batches) == 4:
            break
        _, records, size = batches[0]
        assert caps.refused("attempts", size, records)
    assert caps.cut("attempts", [500] * 4) == [(0, 1, 500), (1, 1, 500), (2, 1, 500), (3, 1, 500)]
    assert not caps.refused("attempts", 500, 1)  # then the record is what is too large


def _log(producer: Producer) -> KafkaLog:
    settings = SimpleNamespace(topic=lambda name: name)
    return KafkaLog(settings, lambda: producer)  # type: ignore[arg-type]


def test_a_flush_the_broker_refuses_as_a_batch_is_sent_again_in_smaller_batches() -> None:
    producer = Producer()
    log = _log(producer)
    rows = [(f"key-{n:05d}".encode(), b"v" * 300) for n in range(3_000)]  # 900 KB
    acked = asyncio.run(log.send({("attempts", 0): rows}))
    assert ("attempts", 0) in acked
    refused = [batch for batch in producer.batches if batch[2]]
    assert refused, "the first batch passed the broker's limit"
    assert all(records > 1 for records, _, _ in refused)
    # every record landed, the last pass whole and in order (an earlier pass may have landed
    # in part: a retried group may land twice, as after any failed send)
    assert producer.landed[-3_000:] == [value for _, value in rows]
    # the cap stays: the next flush goes in batches the broker takes at once
    producer.batches.clear()
    asyncio.run(log.send({("attempts", 1): rows}))
    assert producer.batches and not any(refused for _, _, refused in producer.batches)
    assert all(size <= BROKER_MAX_MESSAGE_BYTES for _, size, _ in producer.batches)


def test_a_record_the_broker_refuses_alone_is_too_large() -> None:
    producer = Producer()
    log = _log(producer)
    rows = [(b"small", b"v" * 100), (b"large", b"v" * (BROKER_MAX_MESSAGE_BYTES + 1))]
    with pytest.raises(RecordTooLarge):
        asyncio.run(log.send({("attempts", 0): rows}))
    assert producer.batches[-1][:1] == (1,)  # refused alone, after the batches were cut


def test_one_pass_refusing_many_partitions_halves_the_cap_once() -> None:
    """(helper-113) 12 partitions, each a 900 KB group refused as one batch by a 200 KB limit:
    the cap comes down to the limit's order, pass after pass, not once per refused partition
    (which left 233 bytes: every later batch one record)."""
    producer = Producer()
    log = _log(producer)
    rows = [(f"key-{n:05d}".encode(), b"v" * 300) for n in range(3_000)]
    acked = asyncio.run(log.send({("attempts", partition): rows for partition in range(12)}))
    assert len(acked) == 12
    assert BROKER_MAX_MESSAGE_BYTES // 2 <= log._caps.cap("attempts") <= BROKER_MAX_MESSAGE_BYTES
    caps = BatchCaps()
    for _ in range(12):  # one pass: a 1 MiB batch of each of 12 partitions refused
        caps.refused("attempts", 1_048_000, 3_000)
    assert caps.cap("attempts") == 524_000
