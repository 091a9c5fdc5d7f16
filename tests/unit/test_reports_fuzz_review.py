"""Random zones, anchors, windows and launches near local midnights: forecast, advisor and counted
learners against the recount of test_reports_recount_review.py (review 2026-12-03)."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import random
import sys
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schemas import topics
from streams.http import report_views, reports
from tests.stages.pipeline import Pipeline, deletion, launch, license_
from tests.stages.test_report_views import wire

_spec = importlib.util.spec_from_file_location(
    "recount", pathlib.Path(__file__).with_name("test_reports_recount_review.py")
)
recount = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["recount"] = recount
_spec.loader.exec_module(recount)  # type: ignore[union-attr]

ZONES = [
    "UTC",
    "America/Santiago",
    "Australia/Lord_Howe",
    "America/Havana",
    "Pacific/Apia",
    "Pacific/Chatham",
    "Asia/Kathmandu",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "America/St_Johns",
    "Africa/Cairo",
    "Asia/Beirut",
    "America/Asuncion",
    "Europe/Dublin",
    "America/Scoresbysund",
]
SEEDS = int(os.environ.get("FUZZ_SEEDS", "25"))


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random(monkeypatch, seed) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    tz = rng.choice(ZONES)
    months = rng.choice([1, 3, 12])
    y, mo, dd = (
        rng.choice([2023, 2024, 2025]),
        rng.choice([1, 2, 3, 4, 8, 9, 10, 11, 12]),
        rng.choice([1, 15, 28, 29, 30, 31]),
    )
    while True:
        try:
            anchor = date(y, mo, dd)
            break
        except ValueError:
            dd -= 1
    now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(0, 365 * 86400))
    zone = ZoneInfo(tz)
    # instants near local midnights of days of the last 15 months
    marks = []
    for _ in range(40):
        d = (now - timedelta(days=rng.randrange(0, 450))).astimezone(zone).date()
        if rng.random() < 0.5:
            d = d.replace(day=1)
        m = recount.midnight(d, tz)
        t = m + timedelta(seconds=rng.choice([-61, -1, 0, 0, 1, 3600, 43200]))
        if t <= now:
            marks.append(t)
    attempts = [(f"l{rng.randrange(15)}", f"a{n}", t) for n, t in enumerate(marks)]
    p = Pipeline(partitions=3, start=now)
    p.produce(
        topics.LICENSES,
        license_(
            "acme",
            cycle_start=anchor.isoformat(),
            window_months=months,
            timezone=tz,
            learner_limit=rng.randint(1, 10),
        ),
    )
    for learner, attempt, t in attempts:
        p.produce(topics.LAUNCHES, launch("acme", learner, attempt, t.astimezone(zone).isoformat()))
    p.settle()
    launches = list(attempts)
    cut = None
    if rng.random() < 0.5:
        cut = rng.choice(marks) if marks else now
        p.advance(1)
        p.produce(
            topics.ATTEMPT_DELETIONS,
            deletion("acme", "r1", "physical", p.now, older_than=cut.isoformat()),
        )
        p.settle()
        launches = [x for x in launches if not x[2] < cut]
    if rng.random() < 0.3:
        tz = rng.choice(ZONES)
        months = rng.choice([1, 3, 12])
        p.advance(1)
        p.produce(
            topics.LICENSES,
            license_(
                "acme",
                cycle_start=anchor.isoformat(),
                window_months=months,
                timezone=tz,
                learner_limit=3,
            ),
        )
        p.settle()
    if rng.random() < 0.3:
        gone = {f"l{rng.randrange(15)}" for _ in range(3)}
        p.advance(1)
        p.produce(
            topics.ATTEMPT_DELETIONS,
            deletion("acme", "r2", "physical", p.now, learner_ids=sorted(gone)),
        )
        p.settle()
        launches = [x for x in launches if x[0] not in gone]
    if rng.random() < 0.3:
        p.restart()
        p.settle()
    if rng.random() < 0.3 and marks:
        # late launches, in and out of order, some repeated
        for n in range(5):
            t = rng.choice(marks) + timedelta(seconds=rng.choice([-1, 0, 1, 7200]))
            if t <= p.now:
                learner = f"m{rng.randrange(4)}"
                p.produce(
                    topics.LAUNCHES,
                    launch("acme", learner, f"late{n}", t.astimezone(ZoneInfo(tz)).isoformat()),
                )
                if cut is None or t >= cut:
                    launches.append((learner, f"late{n}", t))
        p.settle()
    assert not [d for d in p.dead_letters() if d["reason"] != "erased"]
    now = p.now
    wire(monkeypatch, p, now)
    start, end, daily = recount.recount_forecast(launches, anchor, months, tz, now)
    fc = recount.run(report_views.forecast("acme"))
    assert fc["window"]["start"] == start.isoformat(), (tz, anchor, months)
    assert fc["daily"] == daily, (tz, anchor, months)
    assert fc["active_learners"] == daily[-1]["active_learners"]
    adv = recount.run(report_views.advisor("acme"))
    assert adv["options"] == recount.recount_advisor(launches, anchor, months, tz, now), (
        tz,
        anchor,
        months,
    )
    window, _ = report_views.license_window("acme", start.isoformat())
    rows = recount.run(recount.all_rows("window", reports.query("acme", report_views.span(window))))
    lo, hi = recount.midnight(start, tz), recount.midnight(end, tz)
    assert [r[0] for r in rows] == sorted({lr for lr, _, t in launches if lo <= t < hi})
