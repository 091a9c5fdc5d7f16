"""Learner-stage transitions: attempt outcomes, batches of launches, membership, counters."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from streams.domain.deletions import Erasures
from streams.domain.learners import (
    AttemptOutcome,
    BatchResult,
    CountChange,
    LearnerReads,
    PartitionCounters,
    TenantCounts,
    TrackedAttempt,
    apply_attempts,
    classify_attempt,
    windows_of,
)
from streams.domain.licenses import cut_of
from streams.domain.tallies import summarised
from streams.domain.windows import Cut

CUT = Cut(date(2026, 1, 1), 1, "UTC")
MONTHLY = {"license": {"cycle_start": "2026-01-01", "window_months": 1, "timezone": "UTC"}}
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


def launch(learner: str, attempt: str, at: str, element: str = "e", tenant: str = "acme"):
    return TrackedAttempt(tenant, learner, element, attempt, at, 0, 0, "{}")


class Store:
    """A learner partition as plain dicts: what its tables would hold."""

    def __init__(self) -> None:
        self.attempts: dict[tuple, Any] = {}
        self.memberships: dict[tuple, Any] = {}
        self.tenants: dict[str, Any] = {"acme": MONTHLY}
        self.markers: Erasures | None = None  # the same markers for every launch of acme

    def reads(self, items: list[TrackedAttempt]) -> LearnerReads:
        markers = self.markers
        return LearnerReads(
            attempts={i.attempt: self.attempts.get(i.attempt) for i in items},
            memberships={i.learner: self.memberships.get(i.learner) for i in items},
            tenants={i.tenant_id: self.tenants.get(i.tenant_id) for i in items},
            erasures=None if markers is None else (lambda item: markers),
        )

    def apply(self, items: list[TrackedAttempt]) -> BatchResult:
        result = apply_attempts(items, self.reads(items), cut_of)
        self.attempts.update(result.attempts)
        self.memberships.update(result.memberships)
        for tenant in result.new_tenants:
            self.tenants[tenant] = {"license": None}
        return result


def summary(results: list[BatchResult]) -> tuple:
    rejected = [(r.item.attempt_id, r.reason) for res in results for r in res.rejected]
    outcomes: Counter[str] = Counter()
    windows: Counter[str] = Counter()
    total = 0
    for result in results:
        outcomes.update(result.outcomes)
        for change in result.changes.values():
            windows.update(change.windows)
            total += change.total
    return rejected, dict(outcomes), dict(windows), total


MIXED_BATCH = [
    launch("l1", "a1", "2026-03-05T10:00:00+00:00"),
    launch("l1", "a1", "2026-03-05T10:00:00+00:00"),  # a duplicate: a no-op
    launch("l1", "a1", "2026-03-06T10:00:00+00:00"),  # a conflict: dead-lettered
    launch("l2", "a9", "2026-02-01T10:00:00+00:00"),  # covered by an erasure: dead-lettered
    launch("l1", "a2", "2026-04-01T00:00:00+00:00"),  # the first launch of a new window
    launch("l1", "a3", "2026-04-02T00:00:00+00:00"),  # the same window again: no change
    launch("l3", "a4", "2026-03-31T23:59:59.999999+00:00"),  # a microsecond before April
]


def erased_store() -> Store:
    store = Store()
    # l2's launches before March are erased (a learner cut-off applies to every learner here)
    store.markers = Erasures(learner_cutoff=datetime(2026, 2, 15, tzinfo=UTC))
    return store


def test_a_batch_behaves_exactly_as_single_launches() -> None:
    batched, single = erased_store(), erased_store()
    as_batch = summary([batched.apply(MIXED_BATCH)])
    one_by_one = summary([single.apply([item]) for item in MIXED_BATCH])
    assert as_batch == one_by_one
    assert (batched.attempts, batched.memberships) == (single.attempts, single.memberships)
    rejected, outcomes, windows, total = as_batch
    assert rejected == [("a1", "conflict"), ("a9", "erased")]
    assert outcomes == {"new": 4, "repeat": 1, "conflict": 1, "erased": 1}
    assert windows == {"2026-03-01": 2, "2026-04-01": 1}
    assert total == 2
    assert batched.memberships[("acme", "l1")] == {
        "2026-03-01": [ts("2026-03-05T10:00:00+00:00")] * 2,
        "2026-04-01": [ts("2026-04-01T00:00:00+00:00")] * 2,  # a2 and a3: April is one month
    }


def test_applying_a_batch_twice_changes_nothing() -> None:
    store = erased_store()
    store.apply(MIXED_BATCH)
    again = store.apply(MIXED_BATCH)
    assert again.attempts == {} and again.memberships == {} and again.changes == {}
    assert {r.reason for r in again.rejected} == {"conflict", "erased"}


def test_a_launch_once_rejected_as_a_conflict_is_rejected_again_after_a_deletion() -> None:
    # a1 was stored, a1 launched again differently (a conflict), a1 deleted; the same
    # conflicting launch delivered again decides as it did the first time
    store = Store()
    at = datetime.fromisoformat("2026-03-06T10:00:00+00:00")
    store.markers = Erasures(rejected=frozenset({("e", at)}))
    result = store.apply([launch("l1", "a1", "2026-03-06T10:00:00+00:00")])
    assert [r.reason for r in result.rejected] == ["conflict"]
    assert store.attempts == {}
    fresh = store.apply([launch("l1", "a1", "2026-03-07T10:00:00+00:00")])
    assert fresh.outcomes == {"new": 1}


def test_a_launch_a_logical_deletion_covers_is_stored_hidden() -> None:
    store = Store()
    store.markers = Erasures(learner_hidden=datetime(2026, 3, 10, tzinfo=UTC))
    store.apply(
        [
            launch("l1", "a1", "2026-03-05T10:00:00+00:00"),
            launch("l1", "a2", "2026-03-12T10:00:00+00:00"),
        ]
    )
    assert store.attempts[("acme", "l1", "a1")]["logically_deleted"] is True
    assert store.attempts[("acme", "l1", "a2")]["logically_deleted"] is False


def test_a_repeat_heals_a_membership_a_crash_lost() -> None:
    # the attempt record reached the changelog, the learner's membership did not
    store = Store()
    store.attempts[("acme", "l1", "a1")] = {
        "element_id": "e",
        "launched_at": "2026-03-05T10:00:00+00:00",
    }
    result = store.apply([launch("l1", "a1", "2026-03-05T10:00:00+00:00")])
    assert result.outcomes == {"repeat": 1}
    assert windows_of(store.memberships[("acme", "l1")]) == {"2026-03-01"}
    assert result.changes["acme"].windows == {"2026-03-01": 1}
    assert result.changes["acme"].total == 1


def test_a_new_attempt_under_a_surviving_membership_counts_once() -> None:
    # the membership reached the changelog, the attempt record did not
    store = Store()
    store.memberships[("acme", "l1")] = {"2026-03-01": [ts("2026-03-05T10:00:00+00:00")] * 2}
    result = store.apply([launch("l1", "a1", "2026-03-05T10:00:00+00:00")])
    assert result.outcomes == {"new": 1}
    assert ("acme", "l1", "a1") in store.attempts
    change = result.changes["acme"]
    assert not change.counts_changed  # the learner was counted already
    assert change.tallies.months == {"2026-03": 1} and change.tallies.summaries == []


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_a_summary_keeps_the_first_attempt_and_one_of_the_last_month() -> None:
    store = Store()
    quarterly = {"license": {"cycle_start": "2026-01-01", "window_months": 3, "timezone": "UTC"}}
    store.tenants["acme"] = quarterly
    store.apply([launch("l1", "a1", "2026-02-10T10:00:00+00:00")])
    # later in the same month: nothing to write
    later = store.apply([launch("l1", "a2", "2026-02-20T10:00:00+00:00")])
    assert later.memberships == {}
    # a later month: `last` moves
    store.apply([launch("l1", "a3", "2026-03-02T10:00:00+00:00")])
    # an earlier attempt arriving late: `first` moves
    early = store.apply([launch("l1", "a4", "2026-01-15T10:00:00+00:00")])
    assert store.memberships[("acme", "l1")] == {
        "2026-01-01": [ts("2026-01-15T10:00:00+00:00"), ts("2026-03-02T10:00:00+00:00")]
    }
    change = early.changes["acme"].tallies
    # the learner's first day moves from February 10 to January 15; its last month stays March
    assert change.summaries == [
        ("2026-01-01", date(2026, 2, 10).toordinal(), "2026-03", -1),
        ("2026-01-01", date(2026, 1, 15).toordinal(), "2026-03", 1),
    ]
    assert change.months == {"2026-01": 1}


def test_a_months_bound_is_local_midnight_of_the_tenants_zone() -> None:
    store = Store()
    store.tenants["acme"] = {
        "license": {"cycle_start": "2026-01-01", "window_months": 12, "timezone": "Asia/Kolkata"}
    }
    # 18:29 UTC on Feb 28 is still February in Kolkata (+05:30), 18:30 is March
    store.apply([launch("l1", "a1", "2026-02-28T18:29:00+00:00")])
    march = store.apply([launch("l1", "a2", "2026-02-28T18:30:00+00:00")])
    assert march.changes["acme"].tallies.months == {"2026-03": 1}
    assert store.memberships[("acme", "l1")]["2026-01-01"][1] == ts("2026-02-28T18:30:00+00:00")


MARCH = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("markers", "at", "erased"),
    [
        (Erasures(learner_cutoff=MARCH), "2026-02-01", True),
        (Erasures(learner_cutoff=MARCH), "2026-03-02", False),
        (Erasures(tenant_cutoff=MARCH), "2026-02-01", True),
        (Erasures(tenant_cutoff=MARCH), "2026-03-01", False),
        (Erasures(attempt_cutoff=MARCH), "2026-02-01", True),
        (Erasures(attempt_cutoff=MARCH), "2026-03-01", False),
    ],
)
def test_cutoff_markers(markers: Erasures, at: str, erased: bool) -> None:
    store = Store()
    store.markers = markers
    result = store.apply([launch("l1", "a1", f"{at}T00:00:00+00:00")])
    assert bool(result.rejected) is erased


def test_a_tenant_seen_first_is_registered_in_the_partition() -> None:
    store = Store()
    result = store.apply([launch("l1", "a1", "2026-03-05T10:00:00+00:00", tenant="newco")])
    assert result.new_tenants == ["newco"]
    # an unlicensed tenant counts in calendar years
    assert windows_of(store.memberships[("newco", "l1")]) == {"2026-01-01"}


def test_summarised_recuts_from_launch_instants() -> None:
    instants = [datetime(2026, 3, 5, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)]
    quarterly = Cut(date(2026, 1, 1), 3, "UTC")
    assert set(summarised(quarterly, instants)) == {"2026-01-01", "2026-04-01"}


def test_windows_of_reads_both_stored_forms() -> None:
    assert windows_of(["2026-03-01"]) == {"2026-03-01"}
    assert windows_of({"2026-03-01": 2, "2026-04-01": 0}) == {"2026-03-01"}
    assert windows_of(None) == set()


def test_counters_mark_dirty_and_hand_out_copies() -> None:
    counters = PartitionCounters()
    counters.apply(3, "acme", CUT.id, CountChange(Counter({"2026-03-01": 1}), 1), seq=10)
    counters.apply(3, "acme", CUT.id, CountChange(), seq=7)  # an older offset never lowers seq
    [(partition, tenant, copy)] = counters.take_dirty()
    assert (partition, tenant, copy.seq, copy.windows, copy.total) == (
        3,
        "acme",
        10,
        {"2026-03-01": 1},
        1,
    )
    copy.windows["2026-03-01"] = 99
    assert counters.get(3, "acme").windows == {"2026-03-01": 1}  # type: ignore[union-attr]
    assert counters.take_dirty() == []


def test_counters_drop_a_window_that_reaches_zero() -> None:
    counts = TenantCounts(windows={"2026-03-01": 1}, total=1)
    counts.apply(CountChange(Counter({"2026-03-01": -1}), -1))
    assert (counts.windows, counts.total) == ({}, 0)


def test_counters_drop_revoked_partitions() -> None:
    counters = PartitionCounters()
    for partition, tenant in ((1, "a"), (2, "b")):
        counters.touch(partition, tenant, CUT.id, 1)
    counters.drop_partitions({2})
    assert counters.partitions() == {2}
    assert [(p, t) for p, t, _ in counters.take_dirty()] == [(2, "b")]


def test_tenant_counts_add_learner() -> None:
    counts = TenantCounts()
    counts.add_learner(["2026-03-01"])
    counts.add_learner([])
    assert (counts.windows, counts.total) == ({"2026-03-01": 1}, 1)


def test_a_launch_a_microsecond_either_side_of_a_window_bound_lands_where_window_of_says() -> None:
    """The learner stage finds a launch's window among the batch's seen windows by epoch
    seconds. Far from 1970 two instants a microsecond apart can share a float; the look-up must
    still agree with `window_of` at every bound, in every offset a launch may carry."""
    from datetime import timezone

    from streams.domain.learners import _window_info
    from streams.domain.windows import Cut, window_at_index, window_of

    microsecond = timedelta(microseconds=1)
    cuts = [
        Cut(date(2026, 1, 31), 1, "Europe/Berlin"),
        Cut(date(2026, 3, 1), 3, "America/New_York"),
        Cut(date(1970, 1, 1), 12, "UTC"),
    ]
    offsets = [
        UTC,
        timezone(timedelta(hours=5, minutes=30)),
        timezone(-timedelta(hours=9)),
    ]
    for cut in cuts:
        for year in (1971, 2026, 2500, 9000):
            index = window_of(cut, datetime(year, 6, 15, tzinfo=UTC)).index
            seen: list = []
            for near in (index - 1, index, index + 1):  # the batch has seen these windows
                window = window_at_index(cut, near)
                _window_info(seen, cut, window.start_at, window.start_at.timestamp())
            assert len(seen) == 3
            window = window_at_index(cut, index)
            for bound in (window.start_at, window.end_at):
                for instant in (bound - microsecond, bound, bound + microsecond):
                    for offset in offsets:
                        local = instant.astimezone(offset)
                        found = _window_info(seen, cut, local, local.timestamp())
                        assert found.window == window_of(cut, local), (cut, local)


def test_launches_on_a_window_bound_do_not_fill_the_batchs_window_cache_with_copies() -> None:
    from streams.domain.learners import SEEN_WINDOWS, _window_info
    from streams.domain.windows import Cut, window_at_index

    cut = Cut(date(2026, 1, 1), 1, "UTC")
    seen: list = []
    start = window_at_index(cut, 3).start_at
    for _ in range(SEEN_WINDOWS + 2):  # launches exactly at the window's start: window_of's call
        assert _window_info(seen, cut, start, start.timestamp()).window.start_at == start
    assert [info.name for info in seen] == [window_at_index(cut, 3).start.isoformat()]
    later = window_at_index(cut, 5).start_at.replace(day=10)
    _window_info(seen, cut, later, later.timestamp())
    assert len(seen) == 2, "a later window still finds a place"


def test_the_windows_seen_live_on_across_batches_and_a_backfill_does_not_keep_new_ones_out() -> (
    None
):
    """The seen windows of a cut are kept from batch to batch (`seen_windows_of`), so they are
    bounded by replacing the longest seen: after a backfill over many windows, the windows of
    later launches are seen again, and every look-up still agrees with `window_of`."""
    from streams.domain.learners import SEEN_WINDOWS, _window_info, seen_windows_of
    from streams.domain.windows import Cut, window_at_index, window_of

    cut = Cut(date(2024, 5, 17), 1, "Europe/Berlin")
    seen = seen_windows_of(cut)
    assert seen_windows_of(Cut(date(2024, 5, 17), 1, "Europe/Berlin")) is seen  # shared
    seen.clear()
    for index in range(40, 40 + 3 * SEEN_WINDOWS):  # a backfill: one launch a window
        instant = window_at_index(cut, index).start_at + timedelta(days=3)
        assert _window_info(seen, cut, instant, instant.timestamp()).window == window_of(
            cut, instant
        )
    assert len(seen) == SEEN_WINDOWS
    current = window_at_index(cut, 100)
    instant = current.start_at + timedelta(hours=5)
    assert _window_info(seen, cut, instant, instant.timestamp()).window == current
    assert seen[-1].window == current, "the current window is seen from now on"
    assert len(seen) == SEEN_WINDOWS


def test_windows_seen_across_batches_and_tenants_agree_with_window_of_under_any_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Random launches of tenants sharing cuts, in random batches, with the seen list bounded
    to 1-3 windows (constant replacement): every look-up is `window_of`'s answer."""
    import random

    from streams.domain import learners
    from streams.domain.windows import window_of

    cuts = [
        Cut(date(2025, 1, 31), 1, "Europe/Berlin"),
        Cut(date(2024, 2, 29), 3, "America/New_York"),
        Cut(date(1970, 1, 1), 12, "UTC"),
    ]
    start = datetime(2023, 1, 1, tzinfo=UTC).timestamp()
    for bound in (1, 2, 3):
        monkeypatch.setattr(learners, "SEEN_WINDOWS", bound)
        learners.forget_seen_windows()
        rng = random.Random(bound)
        for _ in range(200):  # batches
            for _ in range(rng.randrange(1, 30)):
                cut = rng.choice(cuts)
                instant = datetime.fromtimestamp(start + rng.randrange(4 * 366 * 86_400), UTC)
                seen = learners.seen_windows_of(cut)
                found = learners._window_info(seen, cut, instant, instant.timestamp())
                assert found.window == window_of(cut, instant), (cut, instant)
                assert len(seen) <= bound
    learners.forget_seen_windows()
