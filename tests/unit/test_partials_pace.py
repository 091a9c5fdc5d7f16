"""The learner stage's partial counts go every 0.25 s while it keeps up, every 0.5 s in a
backlog (streams/worker/partials_pace.py)."""

from streams.worker.partials_pace import PartialsPace


def test_the_first_partials_go_at_once() -> None:
    assert PartialsPace().due(100.0)


def test_while_the_stage_keeps_up_partials_go_every_quarter_second() -> None:
    pace = PartialsPace()
    pace.took("learner stage", 5, 64)
    pace.sent(100.0)
    assert not pace.due(100.1)
    assert pace.due(100.25)
    # a tick a little early still sends: the timer's ticks drift either way
    assert pace.due(100.24)


def test_in_a_backlog_partials_go_every_half_second() -> None:
    pace = PartialsPace()
    pace.took("learner stage", 64, 64)
    pace.sent(100.0)
    assert not pace.due(100.25)
    assert not pace.due(100.4)
    assert pace.due(100.49)
    assert pace.due(100.5)


def test_the_pace_follows_the_last_group_taken() -> None:
    pace = PartialsPace()
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
    pace = PartialsPace()
    pace.took("launch reader", 4_000, 4_000)
    pace.took("learner stage", 2, 64)
    assert pace.behind
    pace.sent(100.0)
    assert not pace.due(100.3)
    pace.took("launch reader", 120, 4_000)
    assert not pace.behind
    assert pace.due(100.3)


def test_the_caller_ticks_at_the_shorter_interval() -> None:
    assert PartialsPace().tick_s == 0.25
    assert PartialsPace(keeping_up_s=0.1, behind_s=1.0).tick_s == 0.1
