"""Contract sentences read line by line against the stages (a conformance review, helper-89).

Each test drives the real stages over memory (tests/stages/pipeline.py) and names the sentence of
CONTRACT.md it pins.
"""

from __future__ import annotations

from schemas import topics
from tests.stages.pipeline import Pipeline, launch, license_


def test_a_launch_whose_instant_has_ten_fraction_digits_is_counted() -> None:
    """CONTRACT: 'timestamps are RFC 3339 with an offset'; RFC 3339 bounds no fraction. The
    launch was dead-lettered `invalid`, so its learner went uncounted."""
    p = Pipeline(partitions=2)
    p.produce(topics.LICENSES, license_("acme"))
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-03-19T10:00:00.1234567891Z"))
    p.flow()
    p.settle()
    assert p.dead_letters() == []
    assert p.active("acme", "2026-01-01") == 1
    assert p.attempts()["acme/l1/a1"]["launched_at"] == "2026-03-19T10:00:00.123456+00:00"
    assert p.check() == []
