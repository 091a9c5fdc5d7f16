"""Threshold crossing detection, as a table of count sequences."""

from __future__ import annotations

import pytest

from streams.domain.thresholds import evaluate, event_id

W = "2026-01-01"


def run(counts: list[int], limit: int | None = 10, thresholds=(80, 90, 100)) -> list[str]:
    """Feed successive counts of one window; return the crossings as 'up80', 'down90', ..."""
    state: dict = {}
    fired = []
    for count in counts:
        state, events = evaluate("acme", state, {W: count}, limit, thresholds)
        fired += [f"{e.direction}{e.pct}" for e in events]
    return fired


@pytest.mark.parametrize(
    ("counts", "fired"),
    [
        ([1, 5, 7], []),
        ([7, 8], ["up80"]),  # 80 % of 10 = 8 learners
        ([8, 9, 9, 10, 10], ["up80", "up90", "up100"]),
        ([3, 10], ["up80", "up90", "up100"]),  # a jump over several fires each
        ([10, 8], ["up80", "up90", "up100", "down90", "down100"]),  # a deletion
        ([8, 7, 8], ["up80", "down80", "up80"]),  # re-armed, fires again
        ([12, 12, 12], ["up80", "up90", "up100"]),  # once, not on every update
        ([0], []),
    ],
)
def test_crossings(counts: list[int], fired: list[str]) -> None:
    assert run(counts) == fired


def test_no_limit_fires_nothing() -> None:
    assert run([100, 0, 100], limit=None) == []


def test_threshold_learners_round_up() -> None:
    # 80 % of 7 is 5.6: the 6th learner crosses
    assert run([5, 6], limit=7, thresholds=(80,)) == ["up80"]


def test_limit_change_reevaluates_once() -> None:
    state, events = evaluate("acme", {}, {W: 8}, 10, (80, 100))
    assert [e.pct for e in events] == [80]
    # the limit drops to 8: 100 % is now crossed, fired once; 80 % stays up, no repeat
    state, events = evaluate("acme", state, {W: 8}, 8, (80, 100))
    assert [(e.direction, e.pct) for e in events] == [("up", 100)]
    state, events = evaluate("acme", state, {W: 8}, 8, (80, 100))
    assert events == []


def test_new_thresholds_fire_for_the_current_count() -> None:
    state, _ = evaluate("acme", {}, {W: 9}, 10, (80,))
    _, events = evaluate("acme", state, {W: 9}, 10, (80, 90))
    assert [(e.direction, e.pct) for e in events] == [("up", 90)]


def test_event_ids_are_deterministic_and_distinct() -> None:
    _, first = evaluate("acme", {}, {W: 10}, 10, (80, 90))
    _, again = evaluate("acme", {}, {W: 10}, 10, (80, 90))
    assert [e.event_id for e in first] == [e.event_id for e in again]
    assert len({e.event_id for e in first}) == 2
    assert event_id("acme", W, 80, "up", 1) != event_id("acme", W, 80, "up", 2)


def test_windows_are_independent() -> None:
    state, events = evaluate("acme", {}, {"2025-01-01": 9, "2026-01-01": 2}, 10, (80,))
    assert [(e.window, e.direction) for e in events] == [("2025-01-01", "up")]
    state, events = evaluate("acme", state, {"2026-01-01": 8}, 10, (80,))
    assert [(e.window, e.direction) for e in events] == [("2026-01-01", "up")]


def test_a_threshold_removed_and_added_back_continues_where_it_was() -> None:
    # 9 of 10 learners: 80 % is crossed
    state, fired = evaluate("acme", {}, {"2026-01-01": 9}, 10, [80])
    assert [c.direction for c in fired] == ["up"]
    # 80 % leaves the license; the count drops below it meanwhile: nothing fires for it
    state, fired = evaluate("acme", state, {"2026-01-01": 7}, 10, [90])
    assert fired == []
    # 80 % comes back: the count is below what its last event said, so it goes down, with a
    # new crossing number (never the id of the earlier `up`)
    state, fired = evaluate("acme", state, {"2026-01-01": 7}, 10, [80, 90])
    assert [(c.direction, c.pct) for c in fired] == [("down", 80)]
    assert fired[0].event_id == event_id("acme", "2026-01-01", 80, "down", 2)


def test_a_window_that_goes_away_and_comes_back_keeps_its_crossings() -> None:
    # (the tenant stage no longer evaluates a window a re-cut removed, and evaluates it again
    # when a later license brings it back: the state in between is kept, never pruned)
    state, fired = evaluate("acme", {}, {"2026-01-01": 9}, 10, [80])
    assert [c.event_id for c in fired] == [event_id("acme", "2026-01-01", 80, "up", 1)]
    state, fired = evaluate("acme", state, {"2026-01-01": 2}, 10, [80])
    assert [c.event_id for c in fired] == [event_id("acme", "2026-01-01", 80, "down", 2)]
    state, fired = evaluate("acme", state, {"2026-01-01": 9}, 10, [80])
    assert [c.event_id for c in fired] == [event_id("acme", "2026-01-01", 80, "up", 3)]
