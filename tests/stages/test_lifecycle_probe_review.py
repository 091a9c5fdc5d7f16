"""Probes of a review of 2026-12-02 (helper-51, nothing found; kept as regression tests): an
unlicensed tenant licensed while one learner partition lags; a license tombstoned and re-created
around a physical deletion (thresholds follow)."""

from __future__ import annotations

import pytest

from schemas import topics
from tests.stages.pipeline import Pipeline, deletion, launch, learners_in, license_


@pytest.mark.parametrize("lag", [0, 1])
def test_unlicensed_then_licensed_with_a_lagging_partition(lag: int) -> None:
    p = Pipeline(partitions=2, workers=2, assignment={"w0": [0], "w1": [1]})
    learners = learners_in("acme", 0, 2, 3)
    for learner in learners:
        p.produce(topics.LAUNCHES, launch("acme", learner, "a1", "2026-02-10T10:00:00Z"))
    p.flow("w0")
    p.flow("w1")
    p.settle()
    assert p.active("acme", "2026-01-01") == 3
    p.produce(
        topics.LICENSES,
        license_(
            "acme", learner_limit=3, thresholds=[100], cycle_start="2026-02-01", window_months=1
        ),
    )
    lagging = f"w{lag}"
    other = f"w{1 - lag}"
    p.flow(other)
    p.flow(other)
    # the lagging partition has not applied the license: nothing is published on a half cut
    assert p.counts()[("acme", "2026-01-01")]["licensed"] is False
    p.flow(lagging)
    p.flow(other)
    p.settle()
    assert p.active("acme", "2026-02-01") == 3
    assert [e["direction"] for e in p.events("acme")] == ["up"]
    p.advance(60)
    p.produce(
        topics.ATTEMPT_DELETIONS,
        deletion("acme", "r1", "physical", p.now, learner_ids=learners[:1]),
    )
    p.produce(topics.LICENSES, None, key=b"acme")
    p.flow(other)
    p.flow(lagging)
    p.produce(
        topics.LICENSES,
        license_(
            "acme", learner_limit=3, thresholds=[100], cycle_start="2026-02-01", window_months=1
        ),
    )
    p.settle()
    assert p.active("acme", "2026-02-01") == 2
    assert p.events("acme")[-1]["direction"] == "down"
    assert p.check() == []
