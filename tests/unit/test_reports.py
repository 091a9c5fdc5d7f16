"""The reports' pure parts: learner-id order out of key order, per-window rows, the tallies."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import orjson
import pytest

from streams.domain import reports
from streams.domain.reports import GroupTally, Span


@pytest.mark.parametrize("seed", range(200))
def test_key_order_becomes_learner_id_order(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "ab-. !0"
    ids = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5))) for _ in range(40)}
    in_key_order = sorted(ids, key=lambda learner: (learner + "/").encode())
    ordered = [learner for learner, _ in reports.learner_order((i, None) for i in in_key_order)]
    assert ordered == sorted(ids)


def test_ordinary_ids_pass_at_once() -> None:
    """Random UUIDs (with '-') are held only until the next id: memory stays flat."""
    rng = random.Random(7)
    ids = sorted(str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(1000))
    held = []

    def source():  # type: ignore[no-untyped-def]
        for learner in ids:
            held.append(learner)
            yield learner, None

    out = []
    for learner, _ in reports.learner_order(source()):
        out.append(learner)
        assert len(held) - len(out) <= 1
    assert out == ids


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_rows_of_a_window_and_of_every_learner() -> None:
    prefix = b"acme/"
    rows = [
        (b"acme/l1/a1", orjson.dumps({"launched_at": "2026-10-05T10:00:00+00:00"})),
        (b"acme/l1/a2", orjson.dumps({"launched_at": "2026-11-02T10:00:00+00:00"})),
        (b"acme/l1/a3", orjson.dumps({"launched_at": "2026-11-20T10:00:00+00:00"})),
        (b"acme/l2/a1", orjson.dumps({"launched_at": "2026-09-01T00:00:00Z"})),
    ]
    learners = list(reports.learners_of(rows, len(prefix)))
    assert [learner for learner, _ in learners] == ["l1", "l2"]
    november = Span(at("2026-11-01T00:00:00+00:00"), at("2026-12-01T00:00:00+00:00"))
    assert list(reports.window_rows(learners, november)) == [
        ("l1", at("2026-11-02T10:00:00+00:00"), at("2026-11-20T10:00:00+00:00"), 2)
    ]
    statuses = [
        (learner, active) for learner, active, _ in reports.learner_rows(learners, november)
    ]
    assert statuses == [("l1", True), ("l2", False)]
    firsts = reports.daily_firsts(learners, november, "Asia/Tokyo")
    assert firsts == {"2026-11-02": 1}
    cutoffs = [at("2026-10-01T00:00:00+00:00"), at("2026-11-10T00:00:00+00:00")]
    active_after, removed = reports.advisor_tally(learners, november, cutoffs)
    assert active_after == [1, 1] and removed == [1, 3]


def test_group_tallies_add_up() -> None:
    tally = GroupTally()
    tally.add({"teams": ["t1", "t2"], "roles": ["r"]})
    tally.add({"teams": [], "roles": ["r"]})
    tally.add(None)
    other = GroupTally.from_json(tally.as_json())
    tally.merge(other)
    assert tally.as_json() == {
        "teams": [{"id": "t1", "active_learners": 2}, {"id": "t2", "active_learners": 2}],
        "roles": [{"id": "r", "active_learners": 4}],
        "unassigned": 4,
    }
    assert reports.csv_line(["a,b", 'say "hi"', 3]) == '"a,b","say ""hi""",3\r\n'
    assert datetime.now(UTC)  # the module needs no clock of its own


def test_the_forecast_is_linear_and_says_so() -> None:
    from datetime import date

    firsts = {"2026-11-01": 10, "2026-11-03": 20}
    answer = reports.forecast(firsts, date(2026, 11, 1), date(2026, 12, 1), date(2026, 11, 5), 100)
    assert [d["active_learners"] for d in answer["daily"]] == [10, 10, 30, 30, 30]
    assert answer["pace_per_day"] == 6.0 and answer["projected_at_window_end"] == 30 + 6 * 25
    assert answer["limit_reached_on"] == "2026-11-17"  # 70 more at 6 a day: 12 days after the 5th
    assert "linear" in answer["method"]
    reached = reports.forecast(firsts, date(2026, 11, 1), date(2026, 12, 1), date(2026, 11, 5), 25)
    assert reached["limit_reached_on"] == "2026-11-03"
    never = reports.forecast({}, date(2026, 11, 1), date(2026, 12, 1), date(2026, 11, 5), 5)
    assert never["limit_reached_on"] is None and never["projected_at_window_end"] == 0
    late = reports.forecast(firsts, date(2026, 11, 1), date(2026, 12, 1), date(2026, 11, 5), 10_000)
    assert late["limit_reached_on"] is None, "not within the window"


def test_month_starts_and_the_smallest_deletion() -> None:
    from datetime import date

    assert reports.month_starts(date(2025, 11, 15), date(2026, 2, 1)) == [
        date(2025, 12, 1),
        date(2026, 1, 1),
        date(2026, 2, 1),
    ]
    options = [
        {"older_than": "a", "active_learners_after": 120},
        {"older_than": "b", "active_learners_after": 90},
        {"older_than": "c", "active_learners_after": 40},
    ]
    assert reports.smallest_under_limit(options, 100, 130) == "b"
    assert reports.smallest_under_limit(options, 100, 100) == "b"  # at the limit is not under it
    assert reports.smallest_under_limit(options, 10, 130) is None
    assert reports.smallest_under_limit(options, None, 130) is None
    # under the limit already: the earliest cut-off would only remove older windows' attempts
    assert reports.smallest_under_limit(options, 200, 130) is None


def test_csv_cells_that_a_spreadsheet_would_run_as_formulas_are_shown_as_text() -> None:
    # an id the LMS sent as a formula must not run on the administrator's machine
    for formula in ('=HYPERLINK("http://x","y")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert reports.spreadsheet_text(formula) == "'" + formula
    for text in ("l001", "john.doe", "a-b", "", "'quoted", "1=1"):
        assert reports.spreadsheet_text(text) == text
    assert reports.spreadsheet_text(-5) == -5  # numbers stay numbers
    assert reports.csv_line(["=1+2", "ok", -1]) == "'=1+2,ok,-1\r\n"
    # after blanks, and in full-width signs, a spreadsheet may still read a formula (helper-60)
    for formula in (" =1+1", "  +1", "\uff1d1+1", "\uff0b1", "\uff0d1", "\uff20SUM(A1)"):
        assert reports.spreadsheet_text(formula) == "'" + formula
    assert reports.spreadsheet_text("jane doe 3") == "jane doe 3"


def test_a_csv_cell_with_a_line_break_of_unicode_is_quoted() -> None:
    # readers that split lines as str.splitlines does would cut the row at U+2028 or U+0085
    for char in ("\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c"):
        line = reports.csv_line([f"a{char}b", 3])
        assert line == f'"a{char}b","3"\r\n'
    assert reports.csv_line(["plain", 3]) == "plain,3\r\n"


def test_the_learner_csv_rows_neutralise_formulas_and_keep_the_rest() -> None:
    from streams.http.report_views import learner_csv, window_csv

    first = datetime(2026, 11, 2, 8, tzinfo=UTC).timestamp()
    row = window_csv(["=cmd|' /C calc'!A0", first, first, 2, ["=t"], []])
    assert row[0] == "'=cmd|' /C calc'!A0"
    assert row[1:] == ("2026-11-02T08:00:00+00:00", "2026-11-02T08:00:00+00:00", 2, '["=t"]', "[]")
    assert learner_csv(["@l", True, first, [], ["r"]])[:2] == ("'@l", "active")
    assert window_csv(["l1", first, first, 1, [], []])[0] == "l1"
