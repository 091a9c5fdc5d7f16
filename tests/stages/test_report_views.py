"""The forecast and the advisor as the HTTP views compute them, over the real stages in memory.

Found by a review against CONTRACT.md (2026-12-01): the advisor took the UTC date for "today",
so for the hours between a local month start and UTC midnight (up to 5 h 45 in Kathmandu, 14 h
in Kiritimati) it left out the month start that had just passed; and the forecast's day the
limit is reached came a day late when the pace was a fraction (a float quotient of 15 became
15.000000000000002).
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine
from datetime import UTC, date, datetime
from typing import Any

import pytest

from schemas import topics
from streams.domain import reports as pure
from streams.http import api_views, outputs_reader, report_views, reports
from streams.http.read_model import ReadModel
from tests.stages.pipeline import Pipeline, launch, license_


def wire(
    monkeypatch: pytest.MonkeyPatch,
    pipeline: Pipeline,
    now: datetime,
    *,
    http: bool = False,
    placement: dict[int, str | None] | None = None,
) -> None:
    """The report views answer from the pipeline's first worker, at `now` (`http`: the pages and
    the web app too, the read model caught up; `placement`: where each partition is, all here
    unless given)."""
    from streams.http import pages, web

    model = ReadModel()
    for key, value in pipeline.world.log.latest(topics.LICENSES).items():
        model.apply_license(key, value)
    for key, value in pipeline.world.log.latest(topics.ACTIVE_LEARNER_COUNTS).items():
        model.apply_count(key, value)
    modules: tuple[Any, ...] = (outputs_reader, api_views, report_views)
    if http:
        model.caught_up.set()
        modules += (pages, web)
    for module in modules:
        monkeypatch.setattr(module, "model", model)
    worker = pipeline.worker("w0")
    where = placement if placement is not None else dict.fromkeys(range(pipeline.world.partitions))
    monkeypatch.setattr(reports, "placement", lambda: where)
    monkeypatch.setattr(reports, "local_state", worker.state)
    monkeypatch.setattr(
        reports, "learner_stage", types.SimpleNamespace(counters=worker.learner.counters)
    )
    monkeypatch.setattr(reports, "SCANS", asyncio.Semaphore(4))

    class Fixed(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return now if tz is None else now.astimezone(tz)

    monkeypatch.setattr(report_views, "datetime", Fixed)


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coroutine)


def test_the_advisor_offers_the_local_month_start_that_just_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = datetime(2026, 2, 28, 18, 45, tzinfo=UTC)  # 2026-03-01 00:30 in Kathmandu (+05:45)
    pipeline = Pipeline(partitions=2, start=now)
    pipeline.produce(
        topics.LICENSES,
        license_(
            "acme",
            cycle_start="2026-01-01",
            window_months=3,
            timezone="Asia/Kathmandu",
            learner_limit=2,
        ),
    )
    for learner, at in (
        ("a", "2026-01-10T10:00:00+05:45"),
        ("b", "2026-01-20T10:00:00+05:45"),
        ("c", "2026-02-10T10:00:00+05:45"),
        ("d", "2026-03-01T00:10:00+05:45"),
    ):
        pipeline.produce(topics.LAUNCHES, launch("acme", learner, "x", at))
    pipeline.settle()
    assert pipeline.active("acme", "2026-01-01") == 4
    wire(monkeypatch, pipeline, now)

    answer = run(report_views.advisor("acme"))

    offered = [option["older_than"] for option in answer["options"]]
    assert offered[-1] == "2026-03-01T00:00:00+05:45"
    # before Feb 1 leaves c and d (2: not under the limit of 2); before Mar 1 leaves d alone
    assert answer["smallest_under_limit"] == "2026-03-01T00:00:00+05:45"


def test_the_limit_is_reached_on_the_day_the_pace_says() -> None:
    firsts = {"2026-03-01": 5, "2026-03-02": 4, "2026-03-03": 4}  # 13 learners in 3 days
    answer = pure.forecast(firsts, date(2026, 3, 1), date(2026, 4, 1), date(2026, 3, 3), 78)
    # at 13/3 a day the 65 learners still missing take exactly 15 days: the 18th
    assert answer["limit_reached_on"] == "2026-03-18"


def test_the_forecast_view_says_the_same_day(monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime(2026, 3, 3, 12, tzinfo=UTC)
    pipeline = Pipeline(partitions=2, start=now)
    pipeline.produce(
        topics.LICENSES,
        license_("acme", cycle_start="2026-01-01", window_months=1, learner_limit=78),
    )
    for n in range(13):
        at = f"2026-03-0{1 + n % 3}T08:00:00Z"
        pipeline.produce(topics.LAUNCHES, launch("acme", f"l{n}", "x", at))
    pipeline.settle()
    wire(monkeypatch, pipeline, now)

    answer = run(report_views.forecast("acme"))

    assert answer["daily"][-1] == {"date": "2026-03-03", "active_learners": 13}
    assert answer["limit_reached_on"] == "2026-03-18"


def test_a_failing_part_of_the_tenant_page_cancels_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One part of the tenant page fails: the page answers its error at once, and the parts
    still asking other workers are cancelled, not left running for an answer nobody reads."""
    from streams.http import api, pages

    now = datetime(2026, 3, 3, 12, tzinfo=UTC)
    pipeline = Pipeline(partitions=2, start=now)
    pipeline.produce(topics.LICENSES, license_("acme", cycle_start="2026-01-01", learner_limit=9))
    pipeline.produce(topics.LAUNCHES, launch("acme", "l1", "x", "2026-03-02T08:00:00Z"))
    pipeline.settle()
    wire(monkeypatch, pipeline, now, http=True, placement={0: None, 1: "http://other:6066"})
    asking: list[str] = []

    async def never_answers(url: str, kind: str, partition: int, params: Any) -> Any:
        asking.append("asking")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            asking.append("cancelled")
            raise

    async def unavailable(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)  # the others have started asking by now
        raise api.ApiError(503, "learner partition 1 is moving to another worker")

    monkeypatch.setattr(reports, "remote_aggregate", never_answers)
    monkeypatch.setattr(reports, "first_rows", unavailable)

    async def page_then_what_still_runs() -> tuple[Any, list[str]]:
        answer = await asyncio.wait_for(pages.tenant_reports("acme", 1, now), timeout=30)
        return answer, list(asking)  # (asyncio.run cancels whatever is left only after this)

    answer, when_answered = run(page_then_what_still_runs())

    assert answer == {"error": "learner partition 1 is moving to another worker"}
    assert when_answered.count("asking") >= 1
    assert when_answered.count("cancelled") == when_answered.count("asking")
