"""Review of e421f1c..HEAD (launch reader): the metrics of a batch routed again one launch at a
time after Kafka refused a record of it for its size (`LaunchReader.route` -> `_route_alone`).

Harness: tests/unit/test_launch_reader_review.py (the real LaunchReader, IngestStage,
DurableBatch and KafkaLog; aiokafka's consumer and the app's producer faked).

Run from the repository root:
    .venv/bin/python -m pytest -q -p no:cacheprovider \
        tests/unit/test_launch_reader_metrics_review.py
"""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import TopicPartition

from streams.stages import ingest, metrics
from tests.unit.test_launch_reader_review import (
    LAUNCHES,
    _committed,
    _Consumer,
    _launch,
    _Producer,
    _reader,
    _run_until_committed,
)


def _value(counter: Any) -> float:
    return counter._value.get()


def test_a_launch_routing_fails_on_is_counted_once_when_the_batch_goes_one_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`stage_errors_total{stage="launch-reader"}` counts "commands a stage failed to apply (a
    bug, logged with the record's position)". `_route_one_at_a_time` (streams/stages/ingest.py)
    counts a launch routing fails on when it routes it, not once its dead letter is durable
    (`on_durable`). `route` routes the batch (1), Kafka refuses a command, `_route_alone`
    routes every launch into one group (2), the group's flush is refused too, `apply_events`
    routes each again alone (3): the one launch is counted three times (and logged with a
    traceback three times); the refused launch once more, as it should be."""
    real = ingest.route_launches

    def buggy(records: Any, partitions: int) -> Any:
        records = list(records)
        if any(b'"bug"' in (r.value or b"") for r in records):
            raise RuntimeError("a bug in routing")
        return real(records, partitions)

    monkeypatch.setattr(ingest, "route_launches", buggy)
    # the Python rules fail here: the C router, which reads these launches itself, stays out
    # (a failure out of it takes the same way: tests/unit/test_native_router.py)
    monkeypatch.setattr(ingest, "NATIVE_ROUTER", False)
    consumer = _Consumer({0: [_launch("l1"), _launch("bug"), _launch("huge"), _launch("l2")]}, {})
    reader = _reader(monkeypatch, consumer, _Producer(refuse=b'"huge"'))
    errors = metrics.stage_errors_total.labels("launch-reader")
    before = _value(errors)

    _run_until_committed(reader, consumer)

    assert _committed(consumer) == {TopicPartition(LAUNCHES, 0): 4}
    # one for the launch routing failed on, one for the launch whose command Kafka refused
    assert _value(errors) - before == 2, (
        f"stage_errors_total went up by {_value(errors) - before:.0f} for two launches"
    )


def test_every_launch_read_is_counted_in_launches_total(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`launches_total`: "Launch records read, by outcome (tracked, untracked, dead_lettered)".
    The launch `_route_alone` gives up (its command refused) is dead-lettered (`give_up`) but
    counted under no outcome (and not in dead_letters_total either): the outcomes of a batch no
    longer add up to the launches read, unlike the routing-bug path (`_route_one_at_a_time`),
    which counts its dead letter as `dead_lettered`."""
    consumer = _Consumer({0: [_launch("l1"), _launch("huge"), _launch("l2")]}, {})
    reader = _reader(monkeypatch, consumer, _Producer(refuse=b'"huge"'))
    outcomes = ("tracked", "untracked", "dead_lettered")
    before = sum(_value(metrics.launches_total.labels(o)) for o in outcomes)

    _run_until_committed(reader, consumer)

    assert _committed(consumer) == {TopicPartition(LAUNCHES, 0): 3}
    counted = sum(_value(metrics.launches_total.labels(o)) for o in outcomes) - before
    assert counted == 3, f"3 launches read, {counted:.0f} counted in launches_total"
