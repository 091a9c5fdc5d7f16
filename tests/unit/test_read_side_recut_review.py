"""The read side's figures after license changes, against a recount (review 2026-12-03)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas import topics
from streams.http import api
from streams.http.read_model import ReadModel
from tests.stages.pipeline import Pipeline, launch, license_


def model_of(p: Pipeline) -> ReadModel:
    model = ReadModel()
    for key, value in p.world.log.latest(topics.LICENSES).items():
        model.apply_license(key, value)
    for key, value in p.world.log.latest(topics.ACTIVE_LEARNER_COUNTS).items():
        model.apply_count(key, value)
    model.caught_up.set()
    return model


@pytest.mark.parametrize(
    "new",
    [
        {"window_months": 1, "cycle_start": "2026-01-01"},
        {"window_months": 3, "cycle_start": "2025-12-15"},
        {"timezone": "Pacific/Kiritimati"},
        {"timezone": "Pacific/Pago_Pago", "window_months": 1},
    ],
)
def test_summary_after_a_recut_equals_a_recount(new) -> None:  # type: ignore[no-untyped-def]
    now = datetime(2026, 3, 20, 12, tzinfo=UTC)
    p = Pipeline(partitions=3, start=now)
    base = {"cycle_start": "2025-01-01", "window_months": 12, "learner_limit": 10}
    p.produce(topics.LICENSES, license_("acme", **base))
    for learner, at in (
        ("a", "2025-03-01T10:00:00Z"),
        ("b", "2025-11-01T10:00:00Z"),
        ("c", "2026-01-10T10:00:00Z"),
    ):
        p.produce(topics.LAUNCHES, launch("acme", learner, "x", at))
    p.settle()
    p.advance(5)
    p.produce(topics.LICENSES, license_("acme", **{**base, **new}))
    p.settle()
    p.advance(5)
    p.settle()
    model = model_of(p)
    summary = api.tenant_summary(model, "acme", p.now)
    details = api.tenant_details(model, "acme", p.now)
    # the recount: learners with an attempt in the current window (none in March 2026 windows
    # except for the 3-month window from 2025-12-15 and 12-month ones), total 3
    assert summary["total_learners"] == 3, summary
    assert details["total_learners"] == 3
