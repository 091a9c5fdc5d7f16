"""A tenant with no license whose every attempt a physical deletion removed: "404 for a tenant
with no license and no attempts" (CONTRACT.md, GET /api/tenants/{tenant_id})."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas import topics
from streams.http import api
from streams.http.access import OPEN
from streams.http.read_model import ReadModel
from tests.stages.pipeline import Pipeline, deletion, launch


def model_of(p: Pipeline) -> ReadModel:
    model = ReadModel()
    for key, value in p.world.log.latest(topics.LICENSES).items():
        model.apply_license(key, value)
    for key, value in p.world.log.latest(topics.ACTIVE_LEARNER_COUNTS).items():
        model.apply_count(key, value)
    model.caught_up.set()
    return model


def test_an_unlicensed_tenant_without_attempts_is_not_found() -> None:
    now = datetime(2026, 3, 20, 12, tzinfo=UTC)
    p = Pipeline(partitions=3, start=now)
    p.produce(topics.LAUNCHES, launch("solo", "a", "1", "2025-03-02T10:00:00Z"))
    p.produce(topics.LAUNCHES, launch("solo", "b", "1", "2026-03-02T10:00:00Z"))
    p.settle()
    p.advance(60)
    p.produce(
        topics.ATTEMPT_DELETIONS, deletion("solo", "r1", "physical", p.now, learner_ids=["a", "b"])
    )
    p.settle()
    p.advance(5)
    p.settle()
    model = model_of(p)
    print(model.windows_of("solo"))
    with pytest.raises(api.ApiError) as raised:
        api.require_tenant(model, "solo", OPEN)
    assert raised.value.status == 404
