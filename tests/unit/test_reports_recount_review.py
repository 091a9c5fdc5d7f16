"""Reports against an independent recount from CONTRACT.md's rules (review 2026-12-03).

Every scenario produces launches through the real stages (tests/stages/pipeline.py), wires the
report views to the pipeline's worker (as tests/stages/test_report_views.py does) and compares
the forecast, the advisor, the counted learners, the learner list and the groups with a recount
written here from the contract's words alone (zoneinfo, no code of the service)."""

from __future__ import annotations

import asyncio
import calendar
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from schemas import topics
from streams.http import report_views, reports
from tests.stages.pipeline import Pipeline, launch, license_
from tests.stages.test_report_views import wire


# -- the recount: the contract's rules, written out ----------------------------------------------
def add_months(d: date, n: int) -> date:
    y, m0 = divmod(d.year * 12 + d.month - 1 + n, 12)
    return date(y, m0 + 1, min(d.day, calendar.monthrange(y, m0 + 1)[1]))


def midnight(d: date, tz: str) -> datetime:
    """The first instant whose local date in tz is d (found by search: no fold semantics)."""
    zone = ZoneInfo(tz)
    guess = datetime(d.year, d.month, d.day, tzinfo=UTC) - timedelta(hours=16)
    t = guess
    while datetime.fromtimestamp(t.timestamp(), zone).date() < d:
        t += timedelta(minutes=15)
    # step back minute by minute to the exact first instant (offsets are whole minutes)
    while datetime.fromtimestamp((t - timedelta(minutes=1)).timestamp(), zone).date() >= d:
        t -= timedelta(minutes=1)
    return t


def window_at(anchor: date, months: int, tz: str, now: datetime) -> tuple[date, date]:
    k = 0
    while midnight(add_months(anchor, k * months), tz) > now:
        k -= 1
    while midnight(add_months(anchor, (k + 1) * months), tz) <= now:
        k += 1
    return add_months(anchor, k * months), add_months(anchor, (k + 1) * months)


def recount_forecast(launches, anchor, months, tz, now):  # type: ignore[no-untyped-def]
    start, end = window_at(anchor, months, tz, now)
    lo, hi = midnight(start, tz), midnight(end, tz)
    today = now.astimezone(ZoneInfo(tz)).date()
    daily = []
    d = start
    while d <= min(today, end - timedelta(days=1)):
        upto = midnight(d + timedelta(days=1), tz)
        daily.append(
            {
                "date": d.isoformat(),
                "active_learners": len({lr for lr, _, t in launches if lo <= t < min(upto, hi)}),
            }
        )
        d += timedelta(days=1)
    return start, end, daily


def recount_advisor(launches, anchor, months, tz, now):  # type: ignore[no-untyped-def]
    start, end = window_at(anchor, months, tz, now)
    lo, hi = midnight(start, tz), midnight(end, tz)
    today = now.astimezone(ZoneInfo(tz)).date()
    first = add_months(start, -12)
    month = first if first.day == 1 else add_months(first.replace(day=1), 1)
    options = []
    while month <= min(end, today):
        c = midnight(month, tz)
        if c <= now:
            options.append(
                {
                    "older_than": c.astimezone(ZoneInfo(tz)).isoformat(),
                    "active_learners_after": len(
                        {lr for lr, _, t in launches if lo <= t < hi and t >= c}
                    ),
                    "attempts_removed": len({(lr, a) for lr, a, t in launches if t < c}),
                }
            )
        month = add_months(month, 1)
    return options


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def all_rows(kind: str, params: dict[str, str]) -> list[list[Any]]:
    return [row async for chunk in reports.rows(kind, params) for row in chunk]


SCENARIOS = [
    # (tz, cycle_start, months, now, launches as (learner, attempt, local iso))
    (
        "Australia/Lord_Howe",
        "2026-01-31",
        1,
        datetime(2026, 4, 20, 3, tzinfo=UTC),
        # DST ends 2026-04-05 02:00 (+11 -> +10:30)
        [
            ("a", "1", "2026-03-31T00:00:00+11:00"),
            ("b", "1", "2026-03-30T23:59:59+11:00"),
            ("c", "1", "2026-04-05T01:45:00+11:00"),
            ("c", "2", "2026-04-05T01:45:00+10:30"),
            ("d", "1", "2026-04-04T23:59:00+11:00"),
            ("e", "1", "2026-04-19T23:50:00+10:30"),
            ("f", "1", "2026-03-01T00:00:00+11:00"),
        ],
    ),
    (
        "America/Santiago",
        "2026-01-31",
        1,
        datetime(2026, 9, 20, 12, tzinfo=UTC),
        # DST starts 2026-09-06 at 00:00 -> 01:00
        [
            ("a", "1", "2026-08-31T00:00:00-04:00"),
            ("b", "1", "2026-09-05T23:59:00-04:00"),
            ("c", "1", "2026-09-06T01:00:00-03:00"),
            ("d", "1", "2026-09-06T00:30:00-04:00"),
            ("e", "1", "2026-09-01T00:00:00-04:00"),
            ("e", "2", "2026-08-01T00:00:00-04:00"),
        ],
    ),
    (
        "Pacific/Apia",
        "2024-02-29",
        12,
        datetime(2026, 3, 10, 12, tzinfo=UTC),
        [
            ("a", "1", "2026-02-28T00:00:00+13:00"),
            ("b", "1", "2026-02-27T23:59:00+13:00"),
            ("c", "1", "2026-03-01T00:00:00+13:00"),
            ("d", "1", "2025-03-01T00:00:00+13:00"),
            ("d", "2", "2026-03-09T10:00:00+13:00"),
        ],
    ),
    (
        "Asia/Kathmandu",
        "2025-10-31",
        3,
        datetime(2026, 3, 15, 12, tzinfo=UTC),
        [
            ("a", "1", "2026-01-31T00:00:00+05:45"),
            ("b", "1", "2026-02-01T00:00:00+05:45"),
            ("c", "1", "2026-03-01T00:00:00+05:45"),
            ("c", "2", "2026-02-28T23:59:59+05:45"),
            ("d", "1", "2025-12-31T23:59:00+05:45"),
        ],
    ),
]


@pytest.mark.parametrize("tz,cycle_start,months,now,attempts", SCENARIOS)
def test_forecast_advisor_and_rows_equal_a_recount(  # type: ignore[no-untyped-def]
    monkeypatch, tz, cycle_start, months, now, attempts
) -> None:
    p = Pipeline(partitions=3, start=now)
    p.produce(
        topics.LICENSES,
        license_(
            "acme", cycle_start=cycle_start, window_months=months, timezone=tz, learner_limit=3
        ),
    )
    for learner, attempt, at in attempts:
        p.produce(topics.LAUNCHES, launch("acme", learner, attempt, at))
    p.settle()
    assert not p.dead_letters()
    wire(monkeypatch, p, now)
    launches = [(lr, a, datetime.fromisoformat(at)) for lr, a, at in attempts]
    anchor = date.fromisoformat(cycle_start)

    start, end, daily = recount_forecast(launches, anchor, months, tz, now)
    fc = run(report_views.forecast("acme"))
    assert fc["window"]["start"] == start.isoformat() and fc["window"]["end"] == end.isoformat()
    assert fc["daily"] == daily
    assert fc["active_learners"] == (daily[-1]["active_learners"] if daily else 0)

    adv = run(report_views.advisor("acme"))
    assert adv["options"] == recount_advisor(launches, anchor, months, tz, now)

    window, _ = report_views.license_window("acme", start.isoformat())
    rows = run(all_rows("window", reports.query("acme", report_views.span(window))))
    lo, hi = midnight(start, tz), midnight(end, tz)
    expected = sorted({lr for lr, _, t in launches if lo <= t < hi})
    assert [r[0] for r in rows] == expected
    assert len(rows) == p.active("acme", start.isoformat())


CHANGES = [
    # the license moves its zone, then its cut, mid-window
    ({"timezone": "UTC"}, {"timezone": "Pacific/Kiritimati"}),
    ({"timezone": "Pacific/Kiritimati"}, {"timezone": "Pacific/Pago_Pago"}),
    ({"window_months": 12}, {"window_months": 1, "cycle_start": "2026-01-31"}),
    (
        {"window_months": 1, "timezone": "Asia/Kolkata"},
        {"window_months": 3, "timezone": "America/St_Johns"},
    ),
]


@pytest.mark.parametrize("before,after", CHANGES)
def test_reports_after_a_license_change_equal_a_recount(monkeypatch, before, after) -> None:  # type: ignore[no-untyped-def]
    now = datetime(2026, 3, 31, 11, 30, tzinfo=UTC)
    p = Pipeline(partitions=3, start=now)
    base = {"cycle_start": "2026-01-01", "window_months": 1, "learner_limit": 2}
    p.produce(topics.LICENSES, license_("acme", **{**base, **before}))
    attempts = [
        ("a", "1", "2026-02-28T11:00:00Z"),
        ("b", "1", "2026-02-28T10:00:00Z"),
        ("c", "1", "2026-03-01T10:30:00Z"),
        ("d", "1", "2026-03-30T23:00:00Z"),
        ("e", "1", "2026-03-31T10:00:00Z"),
        ("e", "2", "2026-01-31T10:00:00Z"),
        ("f", "1", "2025-12-31T10:30:00Z"),
    ]
    for learner, attempt, at in attempts:
        p.produce(topics.LAUNCHES, launch("acme", learner, attempt, at))
    p.settle()
    p.produce(topics.LICENSES, license_("acme", **{**base, **after}))
    p.settle()
    wire(monkeypatch, p, now)
    lic = {**base, **after}
    tz = lic.get("timezone", "UTC")
    anchor, months = date.fromisoformat(lic["cycle_start"]), lic["window_months"]
    launches = [(lr, a, datetime.fromisoformat(at)) for lr, a, at in attempts]

    start, end, daily = recount_forecast(launches, anchor, months, tz, now)
    fc = run(report_views.forecast("acme"))
    assert fc["window"]["start"] == start.isoformat()
    assert fc["daily"] == daily
    assert fc["active_learners"] == daily[-1]["active_learners"]
    adv = run(report_views.advisor("acme"))
    assert adv["options"] == recount_advisor(launches, anchor, months, tz, now)
    window, _ = report_views.license_window("acme", start.isoformat())
    rows = run(all_rows("window", reports.query("acme", report_views.span(window))))
    lo, hi = midnight(start, tz), midnight(end, tz)
    assert [r[0] for r in rows] == sorted({lr for lr, _, t in launches if lo <= t < hi})


from tests.stages.pipeline import deletion  # noqa: E402


@pytest.mark.parametrize(
    "mode,selector,removed",
    [
        (
            "physical",
            {"older_than": "2026-03-10T00:00:00+13:00"},
            lambda lr, a, t: t < datetime.fromisoformat("2026-03-10T00:00:00+13:00"),
        ),
        ("physical", {"learner_ids": ["b", "e"]}, lambda lr, a, t: lr in ("b", "e")),
        (
            "physical",
            {"attempts": [{"learner_id": "c", "attempt_id": "2"}]},
            lambda lr, a, t: (lr, a) == ("c", "2"),
        ),
        ("logical", {"older_than": "2026-03-10T00:00:00+13:00"}, lambda lr, a, t: False),
    ],
)
def test_reports_after_a_deletion_equal_a_recount(monkeypatch, mode, selector, removed) -> None:  # type: ignore[no-untyped-def]
    now = datetime(2026, 3, 20, 11, tzinfo=UTC)
    tz, anchor, months = "Pacific/Auckland", date(2026, 1, 31), 1
    p = Pipeline(partitions=3, start=now)
    p.produce(
        topics.LICENSES,
        license_("acme", cycle_start="2026-01-31", window_months=1, timezone=tz, learner_limit=2),
    )
    attempts = [
        ("a", "1", "2026-03-03T00:00:00+13:00"),
        ("b", "1", "2026-03-12T00:00:00+13:00"),
        ("c", "1", "2026-03-01T00:00:00+13:00"),
        ("c", "2", "2026-03-15T00:00:00+13:00"),
        ("d", "1", "2026-02-27T00:00:00+13:00"),
        ("e", "1", "2026-03-18T10:00:00+13:00"),
        ("e", "2", "2026-03-02T10:00:00+13:00"),
    ]
    for learner, attempt, at in attempts:
        p.produce(topics.LAUNCHES, launch("acme", learner, attempt, at))
    p.settle()
    p.advance(60)
    p.produce(topics.ATTEMPT_DELETIONS, deletion("acme", "r1", mode, p.now, **selector))
    p.settle()
    wire(monkeypatch, p, p.now)
    launches = [(lr, a, datetime.fromisoformat(at)) for lr, a, at in attempts]
    launches = [x for x in launches if not removed(*x)]
    start, end, daily = recount_forecast(launches, anchor, months, tz, p.now)
    fc = run(report_views.forecast("acme"))
    assert fc["daily"] == daily
    assert fc["active_learners"] == daily[-1]["active_learners"]
    adv = run(report_views.advisor("acme"))
    assert adv["options"] == recount_advisor(launches, anchor, months, tz, p.now)
    window, _ = report_views.license_window("acme", start.isoformat())
    rows = run(all_rows("window", reports.query("acme", report_views.span(window))))
    lo, hi = midnight(start, tz), midnight(end, tz)
    assert [r[0] for r in rows] == sorted({lr for lr, _, t in launches if lo <= t < hi})
    for r in rows:
        mine = sorted(t.timestamp() for lr, _, t in launches if lr == r[0] and lo <= t < hi)
        assert r[1:4] == [mine[0], mine[-1], len(mine)]
