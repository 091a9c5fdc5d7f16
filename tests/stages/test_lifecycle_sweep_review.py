"""A probe of a review of 2026-12-02 (helper-51, nothing found; kept as a regression test): a crash
at each send of the tenant stage while a license re-cuts the windows, a physical deletion runs
and thresholds cross, with every landing."""

from __future__ import annotations

import pytest

from schemas import topics
from tests.stages.pipeline import Pipeline, deletion, launch, learners_in, license_

LANDINGS = {
    "none": lambda tp, r: 0,
    "all": lambda tp, r: len(r),
    "first of each": lambda tp, r: 1,
    "learner-commands only": lambda tp, r: len(r) if tp[0] == topics.LEARNER_COMMANDS else 0,
}


@pytest.mark.parametrize("landing", sorted(LANDINGS))
@pytest.mark.parametrize("task", [topics.TENANT_COMMANDS, topics.LEARNER_COMMANDS])
def test_crash_sweep_recut_deletion_thresholds(task: str, landing: str) -> None:
    for countdown in range(1, 12):
        p = Pipeline(partitions=2)
        p.produce(topics.LICENSES, license_("acme", learner_limit=6, thresholds=[50, 100]))
        first, second = learners_in("acme", 0, 2, 3), learners_in("acme", 1, 2, 3)
        for learner in first + second:
            p.produce(topics.LAUNCHES, launch("acme", learner, "a1", "2026-02-10T10:00:00Z"))
        p.flow()
        p.settle()
        p.advance(60)
        p.produce(
            topics.ATTEMPT_DELETIONS,
            deletion("acme", "r1", "physical", p.now, learner_ids=[first[0], second[0]]),
        )
        p.produce(
            topics.LICENSES,
            license_("acme", learner_limit=4, thresholds=[50, 100], window_months=1),
        )
        p.crash_at("w0", "send", task, countdown=countdown, landing=LANDINGS[landing])
        p.flow()
        crashed = p.recover()
        p.flow()
        p.settle()
        assert p.active("acme", "2026-02-01") == 4
        assert p.check() == [], (countdown, crashed)
        events = [e for e in p.events("acme") if e["window"]["start"] == "2026-02-01"]
        assert events and events[-1]["direction"] == "up"
