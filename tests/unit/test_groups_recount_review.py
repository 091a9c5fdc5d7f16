"""Groups and learner lists against a recount (review 2026-12-03)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from schemas import topics
from streams.http import report_views, reports
from tests.stages.pipeline import Pipeline, launch, license_
from tests.stages.test_report_views import wire


def test_groups_and_learners_equal_a_recount(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    now = datetime(2026, 3, 20, 12, tzinfo=UTC)
    p = Pipeline(partitions=3, start=now)
    p.produce(topics.LICENSES, license_("acme", cycle_start="2026-01-01", window_months=1))
    groups = {
        "a": {"teams": ["t1", "t2", "t1"], "roles": ["r"]},
        "b": {"teams": [], "roles": ["r"]},
        "c": {"teams": ['t,"=x'], "roles": []},
        "z": {"teams": ["t1"], "roles": ["r"]},  # no attempt at all
    }
    for learner, g in groups.items():
        p.produce(topics.LEARNER_GROUPS, {"tenant_id": "acme", "learner_id": learner, **g})
    p.produce(topics.LEARNER_GROUPS, None, key=b"acme/c")  # c's groups removed again
    for learner, at in (
        ("a", "2026-03-02T10:00:00Z"),
        ("b", "2026-03-03T10:00:00Z"),
        ("c", "2026-03-04T10:00:00Z"),
        ("d", "2026-02-04T10:00:00Z"),
    ):
        p.produce(topics.LAUNCHES, launch("acme", learner, "x", at))
    p.settle()
    wire(monkeypatch, p, now)
    window, _ = report_views.license_window("acme", "2026-03-01")
    params = reports.query("acme", report_views.span(window))
    tally = reports.added_groups(asyncio.run(reports.aggregates("groups", params)))
    assert tally.as_json() == {
        "teams": [{"id": "t1", "active_learners": 1}, {"id": "t2", "active_learners": 1}],
        "roles": [{"id": "r", "active_learners": 2}],
        "unassigned": 2,  # b and c
    }

    async def rows() -> list[list[object]]:
        return [r async for chunk in reports.rows("learners", params) for r in chunk]

    got = [(r[0], r[1]) for r in asyncio.run(rows())]
    assert got == [("a", True), ("b", True), ("c", True), ("d", False)]
