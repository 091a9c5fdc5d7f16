"""Review of deletions (teams/roles, parts, receipts): cases found by reading the code.

A request naming many attempts is cut into several parts per learner partition
(tenant_deletions.deletion_parts, PART_MAX_BYTES). When one learner's named attempts fall into
two parts, each part treats the learner as its own: the receipt counts that learner twice, and a
preview (which removes nothing) sees in each part the learner's other named attempt still there,
so it reports no window losing the learner although the physical deletion removes it.
"""

from __future__ import annotations

from schemas import topics
from tests.stages.pipeline import Pipeline, deletion, launch, license_

JAN = "2026-01-01"


def filler(count: int) -> list[dict[str, str]]:
    """Named attempts of learner l0 that were never launched, sorted between `a1` and `c2`."""
    return [{"learner_id": "l0", "attempt_id": f"b{n:06d}" + "y" * 200} for n in range(count)]


def one_learner_two_attempts() -> Pipeline:
    p = Pipeline(partitions=1)
    p.produce(topics.LICENSES, license_("acme"))
    p.produce(topics.LAUNCHES, launch("acme", "l0", "a1", "2026-02-10T10:00:00Z"))
    p.produce(topics.LAUNCHES, launch("acme", "l0", "c2", "2026-02-11T10:00:00Z"))
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-02-11T10:00:00Z"))
    p.flow()
    p.advance(3600)
    return p


def named() -> list[dict[str, str]]:
    # about 300 kB: over PART_MAX_BYTES (256 KiB), under SELECTOR_MAX_BYTES (512 KiB)
    return [
        {"learner_id": "l0", "attempt_id": "a1"},
        *filler(1_400),
        {"learner_id": "l0", "attempt_id": "c2"},
    ]


def test_a_learner_named_across_two_parts_is_one_learner_affected() -> None:
    p = one_learner_two_attempts()
    p.produce(
        topics.ATTEMPT_DELETIONS,
        deletion("acme", "r1", "physical", p.now, attempts=named()),
    )
    p.flow()
    p.settle()
    assert p.active("acme", JAN) == 1  # l0 is gone, l1 stays
    (receipt,) = p.receipts("r1")
    assert receipt["error"] is None
    assert receipt["attempts_affected"] == 2
    assert receipt["learners_affected"] == 1, receipt["learners_affected"]
    assert receipt["windows"] == [{"start": JAN, "active_before": 2, "active_after": 1}]


def test_a_preview_of_a_learner_named_across_two_parts_shows_the_window_it_leaves() -> None:
    p = one_learner_two_attempts()
    p.produce(
        topics.ATTEMPT_DELETIONS,
        deletion("acme", "r1", "preview", p.now, attempts=named()),
    )
    p.flow()
    p.settle()
    assert p.active("acme", JAN) == 2  # a preview changes nothing
    (receipt,) = p.receipts("r1")
    assert receipt["error"] is None
    assert receipt["attempts_affected"] == 2
    assert receipt["learners_affected"] == 1, receipt["learners_affected"]
    # what the physical deletion of the same selector does: l0 leaves January
    assert receipt["windows"] == [{"start": JAN, "active_before": 2, "active_after": 1}], receipt[
        "windows"
    ]


def test_a_request_refused_for_its_time_then_delivered_again_gets_the_same_receipt() -> None:
    """The contract: the same request delivered again (same mode, selector, requested_at) is a
    redelivery, answered with the same receipt. A request whose requested_at was over an hour
    ahead of its record's timestamp gets an error receipt; the same request produced again two
    hours later is no longer in the future. It is the same request: it must get the same
    receipt, not the error of another request under a used request id."""
    from datetime import timedelta

    p = one_learner_two_attempts()
    request = deletion("acme", "r1", "physical", p.now + timedelta(hours=2), learner_ids=["l0"])
    p.produce(topics.ATTEMPT_DELETIONS, request)
    p.flow()
    (first,) = p.receipts("r1")
    assert "in the future" in first["error"]
    p.advance(3 * 3600)
    p.produce(topics.ATTEMPT_DELETIONS, request)  # the same request again
    p.flow()
    p.settle()
    receipts = p.receipts("r1")
    assert all(r == first for r in receipts), [r["error"] for r in receipts]
    assert p.active("acme", JAN) == 2  # applied once: not at all
