"""The forecast of a tenant far below a large limit is a 500 (review 2026-12-03).

`streams/domain/reports.forecast` builds `last_day + timedelta(days=days_needed)` before it
compares the day with the window's end; at a slow pace `days_needed` (the days to the limit) runs
past 9999-12-31: OverflowError. A tenant licensed for 100,000 learners with 1 counted learner 30
days into its window: days_needed = 99,999 x 30 = 2,999,970 days. CONTRACT.md: `limit_reached_on`
is "the local date the count reached or will reach the limit at the projected pace, or null"
(here null: not within the window), and errors are 4xx one-liners, never a traceback. The
dashboard's tenant page (pages.tenant_reports catches only ApiError) fails with it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from schemas import topics
from streams.domain import reports as pure
from streams.http import report_views
from tests.stages.pipeline import Pipeline, launch, license_
from tests.stages.test_report_views import run, wire


@pytest.mark.parametrize(
    "limit,total,elapsed", [(100_000, 1, 30), (1_000_000, 3, 10), (20_000, 1, 200)]
)
def test_a_slow_pace_is_no_limit_date_not_an_overflow(limit: int, total: int, elapsed: int) -> None:
    today = date.fromordinal(date(2026, 1, 1).toordinal() + elapsed - 1)
    answer = pure.forecast({"2026-01-01": total}, date(2026, 1, 1), date(2027, 1, 1), today, limit)
    assert answer["limit_reached_on"] is None


def test_the_forecast_view_of_a_new_big_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime(2026, 1, 30, 12, tzinfo=UTC)
    p = Pipeline(partitions=2, start=now)
    p.produce(topics.LICENSES, license_("acme", cycle_start="2026-01-01", learner_limit=100_000))
    p.produce(topics.LAUNCHES, launch("acme", "first-learner", "a", "2026-01-02T10:00:00Z"))
    p.settle()
    wire(monkeypatch, p, now)
    answer = run(report_views.forecast("acme"))
    assert answer["active_learners"] == 1
    assert answer["limit_reached_on"] is None


# -- the same over HTTP: the JSON API and the dashboard's tenant page -----------------------------
from typing import Any  # noqa: E402

from tests.unit.web_harness import READ_ALL, Server, bearer, isolate  # noqa: E402


def test_the_api_and_the_tenant_page_answer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, server: Server
) -> None:
    isolate(monkeypatch, tmp_path)
    now = datetime(2026, 1, 30, 12, tzinfo=UTC)
    p = Pipeline(partitions=2, start=now)
    p.produce(topics.LICENSES, license_("acme", cycle_start="2026-01-01", learner_limit=100_000))
    p.produce(topics.LAUNCHES, launch("acme", "first-learner", "a", "2026-01-02T10:00:00Z"))
    p.settle()
    wire(monkeypatch, p, now, http=True)
    answer = server.call("GET", "/api/tenants/acme/forecast", headers=bearer(READ_ALL))
    page = server.page("/tenants/acme", server.sign_in(READ_ALL))
    assert (answer.status, page.status) == (200, 200), (answer.text[:120], page.text[:120])
