"""Learner-stage transitions: attempt outcomes, membership, derived counters."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from streams.domain.learners import (
    AttemptOutcome,
    PartitionCounters,
    TenantCounts,
    add_attempt,
    classify_attempt,
    membership_of,
)
from streams.domain.windows import Cut

CUT = Cut(date(2026, 1, 1), 1, "UTC")
STORED = {"element_id": "course-1", "launched_at": "2026-03-01T10:00:00+00:00"}


@pytest.mark.parametrize(
    ("stored", "element_id", "launched_at", "expected"),
    [
        (None, "course-1", datetime(2026, 3, 1, 10, tzinfo=UTC), AttemptOutcome.NEW),
        (STORED, "course-1", datetime(2026, 3, 1, 10, tzinfo=UTC), AttemptOutcome.REPEAT),
        # the same instant written with another offset is the same launch
        (
            STORED,
            "course-1",
            datetime.fromisoformat("2026-03-01T11:00:00+01:00"),
            AttemptOutcome.REPEAT,
        ),
        (STORED, "course-1", datetime(2026, 3, 1, 10, 1, tzinfo=UTC), AttemptOutcome.CONFLICT),
        (STORED, "course-2", datetime(2026, 3, 1, 10, tzinfo=UTC), AttemptOutcome.CONFLICT),
    ],
)
def test_classify_attempt(stored, element_id, launched_at, expected) -> None:
    assert classify_attempt(stored, element_id, launched_at) is expected


def test_add_attempt_reports_first_in_window_and_first_at_all() -> None:
    first = add_attempt({}, CUT, datetime(2026, 3, 5, tzinfo=UTC))
    assert (first.window, first.joined_window, first.joined_tenant) == ("2026-03-01", True, True)
    second = add_attempt(first.membership, CUT, datetime(2026, 3, 9, tzinfo=UTC))
    assert (second.joined_window, second.joined_tenant) == (False, False)
    third = add_attempt(second.membership, CUT, datetime(2026, 4, 1, tzinfo=UTC))
    assert (third.window, third.joined_window, third.joined_tenant) == ("2026-04-01", True, False)
    assert third.membership == {"2026-03-01": 2, "2026-04-01": 1}
    assert first.membership == {"2026-03-01": 1}, "the input membership is never mutated"


def test_membership_of_recuts_from_launch_instants() -> None:
    instants = [datetime(2026, 3, 5, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)]
    quarterly = Cut(date(2026, 1, 1), 3, "UTC")
    assert membership_of(quarterly, instants) == {"2026-01-01": 1, "2026-04-01": 1}


def test_counters_mark_dirty_and_hand_out_copies() -> None:
    counters = PartitionCounters()
    counts = counters.at_offset(3, "acme", CUT.id, seq=10)
    counts.windows["2026-03-01"] = 1
    counts.total = 1
    counters.at_offset(3, "acme", CUT.id, seq=7)  # an older offset never lowers seq
    counters.mark_dirty(3, "acme")
    [(partition, tenant, copy)] = counters.take_dirty()
    assert (partition, tenant, copy.seq, copy.windows, copy.total) == (
        3,
        "acme",
        10,
        {"2026-03-01": 1},
        1,
    )
    copy.windows["2026-03-01"] = 99
    assert counters.tenant(3, "acme", CUT.id).windows == {"2026-03-01": 1}
    assert counters.take_dirty() == []


def test_counters_drop_revoked_partitions() -> None:
    counters = PartitionCounters()
    for partition, tenant in ((1, "a"), (2, "b")):
        counters.at_offset(partition, tenant, CUT.id, 1)
        counters.mark_dirty(partition, tenant)
    counters.drop_partitions({2})
    assert counters.partitions() == {2}
    assert [(p, t) for p, t, _ in counters.take_dirty()] == [(2, "b")]


def test_tenant_counts_add_learner_counts_only_windows_with_attempts() -> None:
    counts = TenantCounts()
    counts.add_learner({"2026-03-01": 2, "2026-04-01": 0})
    counts.add_learner({})
    assert (counts.windows, counts.total) == ({"2026-03-01": 1}, 1)
