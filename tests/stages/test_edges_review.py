"""What helper-64's review of the simulator's blind spots found (2026-12-03): inputs at the exact
edges of the contract's rules, which the plain schedules (minute-granular instants in 2026) never
reach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas import topics
from tests.stages.pipeline import Pipeline, launch, license_

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _at(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def test_a_launch_a_microsecond_past_the_future_bound_is_future_in_any_year() -> None:
    """`future` is `launched_at` more than 1 hour ahead of the record's Kafka timestamp. The
    launch reader compared the two as float epoch seconds first, and past the year ~2100 a float
    cannot tell a microsecond apart: a launch 1 h + 1 us ahead of its record was counted."""
    start = datetime(2248, 9, 12, 11, 27, 51, 631000, tzinfo=UTC)
    p = Pipeline(partitions=1, start=start)
    p.produce(topics.LICENSES, license_("t"))
    # the record's Kafka timestamp, exactly (`Pipeline.now` reads it through a float too)
    stamp = EPOCH + timedelta(milliseconds=p.world.clock_ms)
    assert stamp == start
    ahead = stamp + timedelta(hours=1, microseconds=1)
    edge = stamp + timedelta(hours=1)
    p.produce(topics.LAUNCHES, launch("t", "ahead", "a", _at(ahead)))
    p.produce(topics.LAUNCHES, launch("t", "edge", "a", _at(edge)))
    p.settle()
    assert [(d["reason"], d["raw"].count('"ahead"')) for d in p.dead_letters()] == [("future", 1)]
    assert set(p.attempts()) == {"t/edge/a"}
    # (the simulator's oracle reads the record's time through the same float, so its own
    # check agreed with the stage here)


def test_a_request_a_microsecond_past_the_future_bound_is_refused_in_any_year() -> None:
    """The same rule for a deletion's `requested_at` (an error receipt), read through the same
    float: past ~2100 a request 1 h + 1 us ahead of its record was applied."""
    start = datetime(2248, 9, 12, 11, 27, 51, 631000, tzinfo=UTC)
    p = Pipeline(partitions=1, start=start)
    stamp = EPOCH + timedelta(milliseconds=p.world.clock_ms)
    p.produce(topics.LAUNCHES, launch("t", "l", "a", _at(stamp - timedelta(days=1))))
    p.settle()
    ahead = stamp + timedelta(hours=1, microseconds=1)
    p.produce(
        topics.ATTEMPT_DELETIONS,
        {
            "request_id": "r1",
            "tenant_id": "t",
            "mode": "physical",
            "requested_at": _at(ahead),
            "learner_ids": ["l"],
        },
    )
    p.settle()
    [receipt] = p.receipts("r1")
    assert receipt["error"] is not None and "future" in receipt["error"]
    assert set(p.attempts()) == {"t/l/a"}
