"""The learner stage's partial counts go every PARTIALS_INTERVAL_MS while the worker keeps up,
no more often than every 0.5 s in a backlog (streams/worker/partials_pace.py)."""

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
    # a tick a little early still sends: the timer's ticks drift either way
    assert pace.due(100.24)


def test_in_a_backlog_partials_go_every_half_second() -> None:
    pace = PartialsPace(keeping_up_s=0.25)
    pace.took("learner stage", 64, 64)
    pace.sent(100.0)
    assert not pace.due(100.25)
    assert not pace.due(100.4)
    assert pace.due(100.49)
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
    assert pace.tick_s == 2.0


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
