"""Contract rules the service once read differently (a review against CONTRACT.md, 2026-12-01).

Inputs the contract calls valid (or untracked) were dead-lettered, so a learner went uncounted
or a tenant's windows fell back to its previous license; and a launch repeating a physically
removed attempt with a later `launched_at` was counted again. Every test drives the real stages
over memory (tests/stages/pipeline.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas import topics
from streams.stages.ingest import route_launches
from streams.stages.store import LEARNER, fenced_topics
from tests.stages.pipeline import Pipeline, deletion, launch, license_

JAN = "2026-01-01"


class Rec:
    """An input record as the ingest stage reads it."""

    def __init__(self, value: dict[str, Any] | bytes, ts: datetime, offset: int = 0) -> None:
        self.key = b"k"
        self.value = value if isinstance(value, bytes) else json.dumps(value).encode()
        self.topic = topics.LAUNCHES
        self.partition = 0
        self.offset = offset
        self.timestamp = int(ts.timestamp() * 1000)


NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)


def _launch(**extra: Any) -> dict[str, Any]:
    return {
        "event_id": "e1",
        "tenant_id": "acme",
        "learner_id": "l1",
        "element_id": "el",
        "attempt_id": "a1",
        "launched_at": "2026-03-20T10:00:00Z",
        **extra,
    }


def test_a_tracked_launch_with_a_long_content_type_is_counted_not_dead_lettered() -> None:
    """CONTRACT: `content_type` string, optional; `scorm`, or any other kind. A real MIME type of
    73 characters (a PowerPoint file) is such a kind; with tracking `tracked` it must count."""
    pptx = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    routed = route_launches([Rec(_launch(content_type=pptx, tracking="tracked"), NOW)], 2)
    assert routed.outcomes["tracked"] == 1, [d.rejected for d in routed.dead_letters]
    assert routed.dead_letters == []


def test_a_long_content_type_launch_counts_end_to_end() -> None:
    pptx = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    p = Pipeline(partitions=1)
    p.produce(topics.LAUNCHES, launch("acme", "l0", "a1", "2026-02-10T10:00:00Z"))
    p.produce(
        topics.LAUNCHES,
        launch("acme", "l1", "a1", "2026-02-10T10:00:00Z", content_type=pptx, tracking="tracked"),
    )
    p.flow()
    p.settle()
    assert p.dead_letters() == []
    assert p.active("acme", JAN) == 2


def test_an_untracked_launch_ahead_of_its_record_is_dropped_not_dead_lettered() -> None:
    """CONTRACT: 'Untracked launches are dropped (counted in metrics), never counted and never
    dead-lettered.' An admin catalog launch (or tracking none) 2 h ahead is untracked."""
    ahead = (NOW + timedelta(hours=2)).isoformat()
    records = [
        Rec(_launch(launched_at=ahead, launched_by="admin"), NOW, 0),
        Rec(_launch(launched_at=ahead, tracking="none", content_type="video"), NOW, 1),
    ]
    routed = route_launches(records, 2)
    assert [d.rejected.reason for d in routed.dead_letters] == []
    assert routed.outcomes["untracked"] == 2


def test_a_license_with_a_notify_address_on_a_single_label_domain_governs() -> None:
    """CONTRACT: `notify` list of e-mail addresses, 'exactly one address per entry, no control
    characters'. `it-ops@intranet` is one address; rejecting it dead-letters the whole license,
    and the tenant is counted with the default license (12 months from 1970-01-01, unlicensed)."""
    p = Pipeline(partitions=1)
    p.produce(
        topics.LICENSES,
        license_("acme", window_months=1, learner_limit=10, notify=["it-ops@intranet"]),
    )
    p.produce(topics.LAUNCHES, launch("acme", "l0", "a0", "2026-03-10T10:00:00Z"))
    p.flow()
    p.settle()
    assert p.dead_letters() == []
    record = p.counts().get(("acme", "2026-03-01"))
    assert record is not None and record["licensed"] is True, sorted(p.counts())


def test_a_license_with_eleven_webhooks_governs() -> None:
    """CONTRACT: `webhooks` "list of http(s):// URLs", no bound: 11 URLs are a valid license."""
    p = Pipeline(partitions=1)
    hooks = [f"https://hooks{n}.example.com/x" for n in range(11)]
    p.produce(topics.LICENSES, license_("acme", window_months=1, learner_limit=10, webhooks=hooks))
    p.produce(topics.LAUNCHES, launch("acme", "l0", "a0", "2026-03-10T10:00:00Z"))
    p.flow()
    p.settle()
    assert p.dead_letters() == []
    record = p.counts().get(("acme", "2026-03-01"))
    assert record is not None and record["licensed"] is True, sorted(p.counts())


def test_a_launch_with_a_long_event_id_is_counted() -> None:
    """CONTRACT: `event_id` string, required, unique per launch (no length bound, unlike the
    four entity ids). A 300-character event id is dead-lettered `invalid` and not counted."""
    routed = route_launches([Rec(_launch(event_id="e" * 300, content_type="scorm"), NOW)], 2)
    assert routed.dead_letters == [], [d.rejected for d in routed.dead_letters]
    assert routed.outcomes["tracked"] == 1


# -- a removed attempt is erased for good ------------------------------------------------------


@pytest.mark.parametrize(
    "selector",
    [{"learner_ids": ["l1"]}, {"attempts": [{"learner_id": "l1", "attempt_id": "a1"}]}],
    ids=["learner_ids", "attempts"],
)
def test_a_later_launch_repeating_a_removed_attempt_is_erased(selector: dict[str, Any]) -> None:
    """CONTRACT: 'a later launch that repeats a removed attempt, or that an executed
    learner_ids/older_than deletion covers (...), is dead-lettered as `erased`, never counted
    again.' A repeat is a launch of the same attempt (tenant, learner, attempt_id): the
    Attempt rule calls one with another launched_at a repeat too."""
    p = Pipeline(partitions=1)
    p.produce(topics.LICENSES, license_("acme"))
    p.produce(topics.LAUNCHES, launch("acme", "l0", "a0", "2026-02-10T10:00:00Z"))
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    assert p.active("acme", JAN) == 2
    p.advance(3600)
    requested = p.now
    p.produce(topics.ATTEMPT_DELETIONS, deletion("acme", "r1", "physical", requested, **selector))
    p.flow()
    p.settle()
    assert p.active("acme", JAN) == 1
    # the LMS resumes the removed attempt a1 of l1 (same attempt id and element) afterwards
    p.advance(600)
    p.produce(
        topics.LAUNCHES, launch("acme", "l1", "a1", (requested + timedelta(minutes=5)).isoformat())
    )
    p.flow()
    p.settle()
    assert p.active("acme", JAN) == 1, "the removed attempt a1 was counted again"
    assert [d["reason"] for d in p.dead_letters()] == ["erased"]


def test_a_later_launch_repeating_an_attempt_removed_by_older_than_is_erased() -> None:
    """The same for `older_than`: the repeat is launched after the cut-off, and still erased."""
    p = Pipeline(partitions=1)
    p.produce(topics.LICENSES, license_("acme"))
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-02-10T10:00:00Z"))
    p.produce(topics.LAUNCHES, launch("acme", "l2", "a2", "2026-03-10T10:00:00Z"))
    p.flow()
    p.advance(3600)
    p.produce(
        topics.ATTEMPT_DELETIONS,
        deletion("acme", "r1", "physical", p.now, older_than="2026-03-01T00:00:00Z"),
    )
    p.flow()
    p.settle()
    assert p.active("acme", JAN) == 1
    # a1 again, launched after the cut-off: a repeat of a removed attempt all the same
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-03-15T10:00:00Z"))
    # a new attempt of the same learner after the cut-off counts
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a3", "2026-03-15T10:00:00Z"))
    p.flow()
    p.settle()
    assert p.active("acme", JAN) == 2
    assert [d["reason"] for d in p.dead_letters()] == ["erased"]


def test_a_takeover_reads_the_attempts_end_before_the_erasures_end() -> None:
    """A deposed owner's markers land a flush before its tombstones; a takeover reads the end
    offsets in TABLES order, so it never catches up with the tombstones while it takes the
    markers before them for a zombie's. Reordering the tables would break that silently."""
    order = fenced_topics(LEARNER)
    assert order.index(topics.ATTEMPTS) < order.index(topics.ERASURES_CHANGELOG)
