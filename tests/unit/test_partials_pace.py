"""The learner stage's partial counts go every PARTIALS_INTERVAL_MS while the worker keeps up,
on a grid of the interval, and no sooner than 0.5 s after the last send finished in a backlog
(streams/worker/partials_pace.py)."""

import pytest

from streams.config.settings import ConfigError, Settings
from streams.worker.partials_pace import PartialsPace


def test_the_first_partials_go_at_once() -> None:
    assert PartialsPace().due(100.0)


def test_by_default_partials_go_every_half_second_backlog_or_not() -> None:
    pace = PartialsPace()
    pace.sent(100.0)
    assert not pace.due(100.25)
    assert pace.due(100.5)
    pace.took("launch reader", 5_000, 5_000)
    pace.sent(101.0)
    assert not pace.due(101.25)
    assert pace.due(101.5)


def test_while_the_worker_keeps_up_partials_go_at_the_interval() -> None:
    pace = PartialsPace(keeping_up_s=0.25)
    pace.took("learner stage", 5, 64)
    pace.sent(100.0)
    assert not pace.due(100.1)
    assert pace.due(100.25)
    # a tick a little early still sends (a quarter of a tick): the ticks drift either way
    assert pace.tick_s == 0.025
    assert pace.due(100.244)
    assert not pace.due(100.24)


def test_in_a_backlog_partials_go_every_half_second() -> None:
    pace = PartialsPace(keeping_up_s=0.25)
    pace.took("learner stage", 64, 64)
    pace.sent(100.0)
    assert not pace.due(100.25)
    assert not pace.due(100.4)
    assert pace.due(100.495)
    assert pace.due(100.5)


def test_the_pace_follows_the_last_group_taken() -> None:
    pace = PartialsPace(keeping_up_s=0.25)
    pace.took("learner stage", 64, 64)
    pace.sent(100.0)
    assert not pace.due(100.3)
    pace.took("learner stage", 3, 64)  # the backlog is gone: the next tick sends
    assert pace.due(100.3)
    pace.sent(100.3)
    pace.took("learner stage", 64, 64)  # a backlog again
    assert not pace.due(100.6)
    assert pace.due(100.8)


def test_one_reader_behind_is_a_backlog() -> None:
    pace = PartialsPace(keeping_up_s=0.25)
    pace.took("launch reader", 4_000, 4_000)
    pace.took("learner stage", 2, 64)
    assert pace.behind
    pace.sent(100.0)
    assert not pace.due(100.3)
    pace.took("launch reader", 120, 4_000)
    assert not pace.behind
    assert pace.due(100.3)


def test_a_longer_interval_than_the_backlogs_holds_in_a_backlog_too() -> None:
    pace = PartialsPace(keeping_up_s=2.0)
    pace.took("launch reader", 4_000, 4_000)
    pace.sent(100.0)
    assert not pace.due(101.0)
    assert pace.due(102.0)
    assert pace.tick_s == 0.2


def test_while_keeping_up_the_sends_keep_to_the_grid() -> None:
    """A send a tick late does not push the next one back: a launch waits at most an interval
    (and a tick) for its report, however long the sends take. Sent an interval after the last
    send's tick, reports came every 0.53 s on median and up to 0.70 s at 10,000 launches/s."""
    pace = PartialsPace(keeping_up_s=0.5)
    pace.sent(100.0)
    assert pace.due(100.5)
    pace.sent(100.54)  # a tick late (the loop was busy, the last send waited for Kafka)
    pace.finished(100.7)
    assert not pace.due(100.9)
    assert pace.due(101.0)  # the grid's slot, not 100.54 + 0.5
    pace.sent(101.03)
    assert pace.due(101.5)


def test_a_send_late_by_half_an_interval_starts_a_new_grid() -> None:
    """Nothing was dirty for a while, then a launch: its report goes at the next tick, and the
    next one an interval after it (no burst to catch the grid up)."""
    pace = PartialsPace(keeping_up_s=0.5)
    pace.sent(100.0)
    assert pace.due(103.37)
    pace.sent(103.37)
    assert not pace.due(103.6)
    assert not pace.due(103.8)
    assert pace.due(103.87)


def test_in_a_backlog_the_next_send_waits_from_the_end_of_the_last() -> None:
    """In a backlog the reports only slow the backlog's end: as under an interval timer, the
    next one goes BEHIND_S after the last one finished."""
    pace = PartialsPace(keeping_up_s=0.5)
    pace.took("launch reader", 5_000, 5_000)
    pace.sent(100.0)
    pace.finished(100.3)
    assert not pace.due(100.5)
    assert not pace.due(100.7)
    assert pace.due(100.8)
    pace.took("launch reader", 10, 5_000)  # caught up: back to the grid
    pace.sent(100.8)
    pace.finished(101.0)
    assert pace.due(101.3)


def test_the_setting() -> None:
    assert Settings.from_env({}).partials_interval_ms == 500
    assert Settings.from_env({"PARTIALS_INTERVAL_MS": "250"}).partials_interval_ms == 250
    with pytest.raises(ConfigError, match="PARTIALS_INTERVAL_MS must be at least 50"):
        Settings.from_env({"PARTIALS_INTERVAL_MS": "10"})
    with pytest.raises(ConfigError, match="PARTIALS_INTERVAL_MS must be at most 10000"):
        Settings.from_env({"PARTIALS_INTERVAL_MS": "60000"})
    assert (
        "PARTIALS_INTERVAL_MS=250" in Settings.from_env({"PARTIALS_INTERVAL_MS": "250"}).describe()
    )
