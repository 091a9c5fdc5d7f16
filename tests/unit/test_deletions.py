"""Deletion rules: selection per selector, erasure decisions, membership removal, receipts."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime

import pytest

from streams.cli.deletions import parse_attempt, parse_cutoff
from streams.domain.deletions import (
    Erasures,
    PartSelector,
    assemble_receipt_windows,
    attempt_cutoff,
    erasure_of,
    hidden_by,
    later,
    remove_attempts,
)
from streams.domain.windows import Cut

T0 = datetime(2026, 3, 1, tzinfo=UTC)
BEFORE, AFTER = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("selector", "learner", "attempt", "launched_at", "selected"),
    [
        (PartSelector(attempts=frozenset({("l1", "a1")})), "l1", "a1", AFTER, True),
        (PartSelector(attempts=frozenset({("l1", "a1")})), "l1", "a2", BEFORE, False),
        (PartSelector(attempts=frozenset({("l1", "a1")})), "l2", "a1", BEFORE, False),
        (PartSelector(learner_ids=frozenset({"l1"}), learners_before=T0), "l1", "a9", BEFORE, True),
        # launched after requested_at: the learner's later attempts stay
        (PartSelector(learner_ids=frozenset({"l1"}), learners_before=T0), "l1", "a9", AFTER, False),
        (
            PartSelector(learner_ids=frozenset({"l1"}), learners_before=T0),
            "l2",
            "a9",
            BEFORE,
            False,
        ),
        (PartSelector(older_than=T0), "anyone", "a", BEFORE, True),
        (PartSelector(older_than=T0), "anyone", "a", T0, False),  # the cut-off itself stays
        (PartSelector(older_than=T0), "anyone", "a", AFTER, False),
    ],
)
def test_selection(selector, learner, attempt, launched_at, selected) -> None:
    assert selector.selects(learner, attempt, launched_at) is selected


@pytest.mark.parametrize(
    ("markers", "launched_at", "erased"),
    [
        (Erasures(), BEFORE, False),
        (Erasures(attempt_cutoff=AFTER), T0, True),
        (Erasures(attempt_cutoff=T0), AFTER, False),  # launched after the marker's cut-off
        (Erasures(learner_cutoff=T0), BEFORE, True),
        (Erasures(learner_cutoff=T0), AFTER, False),  # deleted at T, launches after T: counts
        (Erasures(tenant_cutoff=T0), BEFORE, True),
        (Erasures(tenant_cutoff=T0), T0, False),
    ],
)
def test_erasure_decision(markers: Erasures, launched_at: datetime, erased: bool) -> None:
    assert (erasure_of(markers, launched_at) is not None) is erased


def test_cutoffs_only_move_forward() -> None:
    assert later(None, T0) == T0.isoformat()
    assert later(AFTER.isoformat(), T0) == AFTER.isoformat()
    assert later(BEFORE.isoformat(), T0) == T0.isoformat()


def test_an_attempt_marker_covers_the_deleted_record_and_what_was_launched_before() -> None:
    # the deleted record was launched after the request: its replay must be covered too
    late = datetime(2026, 3, 5, tzinfo=UTC)
    assert attempt_cutoff(T0, late) > late
    assert attempt_cutoff(T0, BEFORE) == T0
    assert attempt_cutoff(T0, None) == T0


def test_a_replayed_attempts_part_selects_by_cut_off_not_by_name() -> None:
    # named a1 was deleted at its first run; launched again later (after the cut-off) it stays
    selector = PartSelector(attempt_cutoffs={("l1", "a1"): T0})
    assert selector.selects("l1", "a1", BEFORE)
    assert not selector.selects("l1", "a1", AFTER)
    assert not selector.selects("l1", "a2", BEFORE)


def test_hidden_by_logical_cutoffs() -> None:
    assert hidden_by(Erasures(learner_hidden=T0), BEFORE)
    assert not hidden_by(Erasures(learner_hidden=T0), AFTER)
    assert not hidden_by(Erasures(learner_cutoff=T0), BEFORE)  # erasure is not hiding


def rows(*attempts: tuple[str, str]) -> list[tuple[bytes, str, str, datetime]]:
    """(key, learner, attempt, launched_at) rows of learner l1."""
    return [
        (f"acme/l1/{attempt}".encode(), "l1", attempt, datetime.fromisoformat(at))
        for attempt, at in attempts
    ]


MONTHLY = Cut(date(2026, 1, 1), 1, "UTC")
HISTORY = rows(
    ("a1", "2026-01-05T00:00:00+00:00"),
    ("a2", "2026-01-20T00:00:00+00:00"),
    ("a3", "2026-02-10T00:00:00+00:00"),
)


def test_removing_some_attempts_keeps_the_windows_others_hold() -> None:
    removal = remove_attempts(
        ["2026-01-01", "2026-02-01"],
        HISTORY,
        PartSelector(attempts=frozenset({("l1", "a1"), ("l1", "a3")})),
        MONTHLY,
    )
    assert removal.removed == (b"acme/l1/a1", b"acme/l1/a3")
    assert removal.windows == ("2026-01-01",)
    assert removal.window_changes == {"2026-02-01": -1}
    assert removal.total_change == 0


def test_removing_every_attempt_leaves_the_tenant() -> None:
    removal = remove_attempts(
        ["2026-01-01", "2026-02-01"], HISTORY, PartSelector(older_than=T0), MONTHLY
    )
    assert (removal.windows, removal.total_change) == ((), -1)
    assert removal.window_changes == {"2026-01-01": -1, "2026-02-01": -1}


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# HISTORY's membership as the stage stores it: per window its first attempt and one of the month
# of its last (streams/domain/tallies.py)
STORED = {
    "2026-01-01": [at("2026-01-05T00:00:00+00:00"), at("2026-01-05T00:00:00+00:00")],
    "2026-02-01": [at("2026-02-10T00:00:00+00:00"), at("2026-02-10T00:00:00+00:00")],
}


def test_nothing_selected_removes_nothing_and_changes_nothing() -> None:
    removal = remove_attempts(
        STORED,
        HISTORY,
        PartSelector(older_than=datetime(2025, 12, 1, tzinfo=UTC)),
        MONTHLY,
    )
    assert removal.removed == ()
    assert not removal.membership_changed
    assert removal.membership == STORED  # January's `last` is of its last month: it holds


def test_a_membership_without_summaries_is_rewritten_with_them() -> None:
    removal = remove_attempts(
        ["2026-01-01", "2026-02-01"],
        HISTORY,
        PartSelector(older_than=datetime(2025, 12, 1, tzinfo=UTC)),
        MONTHLY,
    )
    assert removal.removed == ()
    assert removal.membership_changed
    assert removal.membership == {
        "2026-01-01": [at("2026-01-05T00:00:00+00:00"), at("2026-01-20T00:00:00+00:00")],
        "2026-02-01": [at("2026-02-10T00:00:00+00:00"), at("2026-02-10T00:00:00+00:00")],
    }


def test_a_summary_whose_first_attempt_is_removed_is_recomputed() -> None:
    removal = remove_attempts(
        STORED, HISTORY, PartSelector(attempts=frozenset({("l1", "a1")})), MONTHLY
    )
    assert removal.removed_at == (at("2026-01-05T00:00:00+00:00"),)
    assert removal.membership["2026-01-01"] == [
        at("2026-01-20T00:00:00+00:00"),
        at("2026-01-20T00:00:00+00:00"),
    ]
    assert removal.membership["2026-02-01"] == STORED["2026-02-01"]
    assert removal.membership_changed and not removal.window_changes


def test_a_drifted_membership_is_recomputed_from_the_attempts() -> None:
    # the stored membership lost February; what remains decides, and the drift heals
    removal = remove_attempts(
        ["2026-01-01"], HISTORY, PartSelector(attempts=frozenset({("l1", "a1")})), MONTHLY
    )
    assert removal.windows == ("2026-01-01", "2026-02-01")
    assert removal.window_changes == {"2026-02-01": 1}


def test_a_learner_whose_attempts_a_crash_already_deleted_leaves_its_windows() -> None:
    # the tombstones became durable, the membership did not: nothing is left to select, and
    # the membership is healed all the same
    removal = remove_attempts(
        ["2026-01-01", "2026-02-01"], [], PartSelector(older_than=T0), MONTHLY
    )
    assert removal.removed == ()
    assert removal.membership_changed
    assert (removal.windows, removal.total_change) == ((), -1)


def part(partition: int, counts: dict[str, int], losses: dict[str, int]) -> dict:
    return {
        "attempts_affected": sum(losses.values()),
        "learners_affected": sum(losses.values()),
        "losses": losses,
        "counts": counts,
        "partition": partition,
    }


def test_receipt_windows_are_a_function_of_the_parts_in_any_order() -> None:
    # every partition ran a part; partition 0 ran two (the second after the first)
    parts = {
        "0": part(0, {"2026-01": 10}, {"2026-01": 2}),
        "1": part(0, {"2026-01": 8}, {"2026-01": 1}),
        "2": part(1, {"2026-01": 5, "2026-02": 3}, {"2026-01": 1, "2026-02": 1}),
        "3": part(2, {"2026-01": 7, "2026-02": 1}, {}),
    }
    expected = [
        {"start": "2026-01", "active_before": 22, "active_after": 18},
        {"start": "2026-02", "active_before": 4, "active_after": 3},
    ]
    for order in itertools.permutations(parts):
        shuffled = {key: parts[key] for key in order}
        assert assemble_receipt_windows(shuffled) == expected


def test_windows_without_change_are_not_listed() -> None:
    assert assemble_receipt_windows({"0": part(0, {"2026-01": 4}, {})}) == []


NOW = datetime(2026, 11, 28, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "cutoff"),
    [
        ("8mo", datetime(2026, 3, 28, 15, 30, tzinfo=UTC)),
        ("1y", datetime(2025, 11, 28, 15, 30, tzinfo=UTC)),
        ("2w", datetime(2026, 11, 14, 15, 30, tzinfo=UTC)),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01T10:00:00+01:00", datetime(2026, 3, 1, 9, tzinfo=UTC)),
        # as the worker reads a timestamp (helper-83: `fromisoformat` refused these)
        ("2026-03-01t10:00:00z", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
        ("2026-03-01T10:00:00.1234569Z", datetime(2026, 3, 1, 10, 0, 0, 123_456, tzinfo=UTC)),
    ],
)
def test_parse_cutoff(text: str, cutoff: datetime) -> None:
    assert parse_cutoff(text, NOW) == cutoff


@pytest.mark.parametrize(
    "text", ["8 months", "2026-03-01T10:00:00", "soon", "20260301T100000Z", "1899-12-31T00:00:00Z"]
)
def test_parse_cutoff_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="older-than"):
        parse_cutoff(text, NOW)


def test_parse_attempt() -> None:
    assert parse_attempt("l1:a1") == {"learner_id": "l1", "attempt_id": "a1"}
    with pytest.raises(ValueError, match="LEARNER:ATTEMPT"):
        parse_attempt("l1")


def test_parse_attempt_with_colons_in_ids() -> None:
    """Ids may contain ':' (never '/'): the split on '/' is the unambiguous one, and a text
    with two ':' is refused rather than split where the user did not mean."""
    assert parse_attempt("urn:l:7/a:1") == {"learner_id": "urn:l:7", "attempt_id": "a:1"}
    with pytest.raises(ValueError, match="more than one ':'; write LEARNER/ATTEMPT"):
        parse_attempt("urn:l:7:a1")
    for bad in ("l/a/b", "/a1", "l1/", ":a1", "l1:"):
        with pytest.raises(ValueError, match="expected LEARNER:ATTEMPT or LEARNER/ATTEMPT"):
            parse_attempt(bad)


def test_the_recount_applies_team_deletions_with_the_groups_of_the_moment() -> None:
    from streams.domain.recount import without_deleted

    launches = [
        {"tenant_id": "acme", "learner_id": learner, "attempt_id": a, "launched_at": at}
        for learner, a, at in [
            ("l1", "a1", "2026-02-01T00:00:00+00:00"),
            ("l1", "a2", "2026-04-01T00:00:00+00:00"),  # after requested_at: stays
            ("l2", "a3", "2026-02-01T00:00:00+00:00"),  # another team: stays
            ("l3", "a4", "2026-02-01T00:00:00+00:00"),  # no groups at all: stays
        ]
    ]
    request = {"tenant_id": "acme", "requested_at": "2026-03-01T00:00:00+00:00", "teams": ["t1"]}
    groups = {("acme", "l1"): {"teams": ["t1", "t2"]}, ("acme", "l2"): {"teams": ["t9"]}}
    kept = without_deleted(launches, request, groups)
    assert [launch["attempt_id"] for launch in kept] == ["a2", "a3", "a4"]
    roles = {**request, "teams": None, "roles": ["manager"]}
    assert len(without_deleted(launches, roles, {("acme", "l2"): {"roles": ["manager"]}})) == 3


def test_one_selector_shape_from_every_source_and_what_it_selects() -> None:
    from datetime import UTC, datetime

    from streams.domain.selectors import Selector

    at = datetime(2026, 3, 1, tzinfo=UTC)
    before, after = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    named = Selector.of("attempts", [{"learner_id": "l1", "attempt_id": "a1"}, ("l1", "a1")])
    assert named == Selector.of_fields({"attempts": [{"learner_id": "l1", "attempt_id": "a1"}]})
    assert named.selects("l1", "a1", after, at)  # named attempts: whenever launched
    assert not named.selects("l1", "a2", before, at)
    learners = Selector.of("learner_ids", ["l2", "l1", "l1"])
    assert learners.values == ("l1", "l2")
    assert learners.selects("l2", "x", before, at) and not learners.selects("l2", "x", after, at)
    cutoff = Selector.of_fields({"older_than": "2026-03-01T00:00:00Z"})
    assert cutoff == Selector.of("older_than", [at]) == Selector.from_json(cutoff.as_json())
    assert cutoff.selects("anyone", "x", before, after) and not cutoff.selects("a", "x", at, after)
    teams = Selector.of("teams", ["t1"])
    assert teams.selects("l", "x", before, at, {"teams": ["t1", "t9"]})
    assert not teams.selects("l", "x", before, at, {"roles": ["t1"]})
    assert not teams.selects("l", "x", after, at, {"teams": ["t1"]})
    for selector in (named, learners, cutoff, teams):
        assert Selector.of_fields(selector.request_fields()) == selector
    with pytest.raises(ValueError):
        Selector.of_fields({"mode": "physical"})
    # only the selectors that apply before the request need its requested_at
    assert cutoff.selects("anyone", "x", before, None) and named.selects("l1", "a1", after, None)
    with pytest.raises(ValueError):
        learners.selects("l1", "x", before, None)
