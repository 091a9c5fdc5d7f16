"""Logical/physical mixes, redeliveries and previews around the 'erased for good' markers."""

from __future__ import annotations

from datetime import timedelta

from schemas import topics
from tests.stages.pipeline import Pipeline, deletion, launch, license_

JAN = "2026-01-01"
A1 = [{"learner_id": "l1", "attempt_id": "a1"}]


def reasons(p):
    """one per source (the pipeline may deliver a dead letter twice: at-least-once)"""
    return [r for _, r in sorted({(d["source"]["offset"], d["reason"]) for d in p.dead_letters()})]


def base() -> Pipeline:
    p = Pipeline(partitions=2)
    p.produce(topics.LICENSES, license_("acme"))
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-02-10T10:00:00Z"))
    p.produce(topics.LAUNCHES, launch("acme", "l2", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    p.advance(3600)
    return p


def req(p, rid, mode, **sel):
    p.produce(topics.ATTEMPT_DELETIONS, deletion("acme", rid, mode, p.now, **sel))
    p.flow()
    p.settle()
    p.advance(600)


def relaunch(p, at=None, element="e"):
    at = at or (p.now + timedelta(minutes=1)).isoformat()
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", at, element=element))
    p.flow()
    p.settle()


def test_logical_then_physical_then_relaunch():
    p = base()
    req(p, "r1", "logical", attempts=A1)
    req(p, "r2", "physical", learner_ids=["l1"])
    assert p.active("acme", JAN) == 1
    relaunch(p)
    assert p.active("acme", JAN) == 1
    assert reasons(p) == ["erased"]
    assert p.check() == []


def test_physical_then_logical_then_relaunch():
    p = base()
    req(p, "r1", "physical", attempts=A1)
    req(p, "r2", "logical", attempts=A1)
    relaunch(p)
    assert p.active("acme", JAN) == 1
    assert "acme/l1/a1" not in p.attempts()
    assert reasons(p) == ["erased"]
    assert p.check() == []


def test_preview_leaves_no_marker():
    p = base()
    req(p, "r1", "preview", attempts=A1)
    req(p, "r2", "preview", learner_ids=["l1"])
    relaunch(p, at="2026-02-10T10:00:00Z")  # a true repeat: a no-op
    assert p.active("acme", JAN) == 2
    assert p.dead_letters() == []
    assert p.check() == []


def test_not_found_named_attempt_launched_later_survives_redelivery():
    """A named attempt not found: marker = requested_at; a launch after it counts; the
    same request again (redelivery) leaves it; the receipt is the same."""
    p = Pipeline(partitions=2)
    p.produce(topics.LICENSES, license_("acme"))
    p.produce(topics.LAUNCHES, launch("acme", "l2", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    p.advance(3600)
    request = deletion("acme", "r1", "physical", p.now, attempts=A1)
    p.produce(topics.ATTEMPT_DELETIONS, request)
    p.flow()
    p.settle()
    p.advance(600)
    relaunch(p)
    assert p.active("acme", JAN) == 2
    p.produce(topics.ATTEMPT_DELETIONS, request)
    p.flow()
    p.settle()
    assert p.active("acme", JAN) == 2
    receipts = {str(sorted(r.items())) for r in p.receipts("r1")}
    assert len(receipts) == 1
    assert p.check() == []


def test_found_named_attempt_redelivered_after_relaunch():
    p = base()
    request = deletion("acme", "r1", "physical", p.now, attempts=A1)
    p.produce(topics.ATTEMPT_DELETIONS, request)
    p.flow()
    p.settle()
    p.advance(600)
    relaunch(p, element="e2")
    p.produce(topics.ATTEMPT_DELETIONS, request)
    p.flow()
    p.settle()
    relaunch(p, at="2026-02-10T10:00:00Z")  # the removed launch itself again
    assert p.active("acme", JAN) == 1
    assert reasons(p) == ["erased", "erased"]
    assert len({str(sorted(r.items())) for r in p.receipts("r1")}) == 1
    assert p.check() == []


def test_conflict_remembered_then_physical_then_conflict_again():
    p = base()
    relaunch(p, at="2026-02-11T10:00:00Z", element="e9")  # a conflict, remembered
    req(p, "r1", "physical", learner_ids=["l1"])
    relaunch(p, at="2026-02-11T10:00:00Z", element="e9")
    relaunch(p, element="e9")
    assert reasons(p) == ["conflict", "erased", "erased"]
    assert p.active("acme", JAN) == 1
    assert p.check() == []
