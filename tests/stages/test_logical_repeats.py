"""A logical deletion's receipt counts the attempts it hides: an attempt an earlier logical
deletion hid is not hidden again, so a second request over the same attempts affects none of
them. A physical deletion (and a preview) still counts hidden attempts: it removes them.

Found in review: a repeated `older_than` logical deletion said it hid every old attempt again.
"""

from __future__ import annotations

import pytest

from schemas import topics
from tests.stages.pipeline import Pipeline, deletion, launch, license_

OLD = "2026-02-15T00:00:00+00:00"


def populated() -> Pipeline:
    p = Pipeline(partitions=2)
    p.produce(topics.LICENSES, license_("acme"))
    for n in range(4):
        p.produce(topics.LAUNCHES, launch("acme", f"l{n}", "a1", f"2026-02-0{n + 1}T10:00:00Z"))
        p.produce(topics.LAUNCHES, launch("acme", f"l{n}", "a2", f"2026-02-2{n + 1}T10:00:00Z"))
    p.flow()
    p.advance(3600)
    return p


def request(p: Pipeline, request_id: str, mode: str, **selector: object) -> dict[str, object]:
    p.produce(topics.ATTEMPT_DELETIONS, deletion("acme", request_id, mode, p.now, **selector))
    p.flow()
    p.settle()
    p.advance(600)
    (receipt,) = {str(r): r for r in p.receipts(request_id)}.values()
    assert receipt["error"] is None
    return receipt


def affected(receipt: dict[str, object]) -> tuple[object, object]:
    return receipt["attempts_affected"], receipt["learners_affected"]


def test_a_repeated_logical_deletion_hides_nothing_again() -> None:
    p = populated()
    assert affected(request(p, "r1", "logical", older_than=OLD)) == (4, 4)
    assert affected(request(p, "r2", "logical", older_than=OLD)) == (0, 0)
    assert p.check() == []


def test_an_overlapping_logical_deletion_counts_only_what_it_hides() -> None:
    p = populated()
    assert affected(request(p, "r1", "logical", learner_ids=["l0"])) == (2, 1)
    # l0's old attempt is hidden already: the three other learners' old attempts
    assert affected(request(p, "r2", "logical", older_than=OLD)) == (3, 3)
    named = [{"learner_id": "l1", "attempt_id": "a1"}, {"learner_id": "l1", "attempt_id": "a2"}]
    assert affected(request(p, "r3", "logical", attempts=named)) == (1, 1)
    assert p.check() == []


@pytest.mark.parametrize("mode", ["preview", "physical"])
def test_hidden_attempts_count_when_removed(mode: str) -> None:
    p = populated()
    request(p, "r1", "logical", older_than=OLD)
    assert affected(request(p, "r2", mode, learner_ids=["l0", "l1"])) == (4, 2)
    assert p.check() == []


def test_a_redelivered_logical_deletion_gets_its_first_receipt() -> None:
    p = populated()
    first = request(p, "r1", "logical", older_than=OLD)
    p.produce(
        topics.ATTEMPT_DELETIONS, deletion("acme", "r1", "logical", p.now, older_than=OLD)
    )  # another requested_at: another request
    again = deletion("acme", "r1", "logical", p.now, older_than=OLD)
    again["requested_at"] = first["requested_at"]
    p.produce(topics.ATTEMPT_DELETIONS, again)
    p.flow()
    p.settle()
    good = [r for r in p.receipts("r1") if r["error"] is None]
    assert {affected(r) for r in good} == {(4, 4)}
    assert p.check() == []
