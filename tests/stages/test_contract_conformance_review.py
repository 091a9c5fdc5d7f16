"""Contract sentences read line by line against the stages (a conformance review, helper-89).

Each test drives the real stages over memory (tests/stages/pipeline.py) and names the sentence of
CONTRACT.md it pins.
"""

from __future__ import annotations

from datetime import timedelta, timezone

from schemas import topics
from tests.stages.pipeline import Pipeline, deletion, launch, license_


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


def test_a_redelivery_is_told_by_mode_selector_and_requested_at_alone() -> None:
    """CONTRACT (attempt-deletions): 'The same request delivered again (same mode, selector and
    `requested_at`) is a redelivery: applied once, answered with the same receipt.' The same
    instant in another offset, the same learners in another order (named twice), and another
    `requested_by` and `reason` are the same request; another `requested_at` is not."""
    p = Pipeline(partitions=2)
    p.produce(topics.LICENSES, license_("acme"))
    for learner in ("l1", "l2", "l3"):
        p.produce(topics.LAUNCHES, launch("acme", learner, "a1", "2026-03-19T10:00:00Z"))
    p.flow()
    p.settle()
    at = p.now
    first = deletion("acme", "r1", "physical", at, learner_ids=["l1", "l2"])
    p.produce(topics.ATTEMPT_DELETIONS, {**first, "requested_by": "ann", "reason": "gdpr"})
    p.flow()
    p.settle()
    [receipt] = p.receipts("r1")
    assert (receipt["attempts_affected"], receipt["error"]) == (2, None)

    again = deletion("acme", "r1", "physical", at.astimezone(timezone(timedelta(hours=2))))
    again["learner_ids"] = ["l2", "l1", "l2"]
    p.produce(topics.ATTEMPT_DELETIONS, {**again, "requested_by": "bob", "reason": "other"})
    later = deletion("acme", "r1", "physical", at + timedelta(seconds=1), learner_ids=["l1", "l2"])
    p.produce(topics.ATTEMPT_DELETIONS, later)
    p.flow()
    p.settle()
    receipts = p.receipts("r1")
    assert receipts[:2] == [receipt, receipt]  # the first request's, naming ann and her reason
    assert receipts[2]["error"] == "request_id 'r1' was already used for another request"
    assert receipts[2]["attempts_affected"] == 0 and len(receipts) == 3
    assert p.active("acme", "2026-01-01") == 1
    assert p.check() == []
