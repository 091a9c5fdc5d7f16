"""Tenant-stage transitions: partial acceptance, sums, which records to publish."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from streams.domain.tenants import (
    TenantSums,
    newer_partial,
    plan_publication,
    publication_ready,
    sum_partials,
    threshold_learners,
    utilization_pct,
)
from streams.domain.windows import Cut

MONTHLY = Cut(date(2026, 1, 15), 1, "UTC")
NOW = datetime(2026, 3, 20, tzinfo=UTC)  # current window: 2026-03-15


def partial(epoch: int, seq: int, cut: Cut = MONTHLY, windows=None, total: int = 0) -> dict:
    return {
        "epoch": [epoch, 1],
        "seq": seq,
        "cut": cut.id,
        "windows": windows or {},
        "total": total,
    }


@pytest.mark.parametrize(
    ("stored", "incoming", "accepted"),
    [
        (None, partial(1, 5), True),
        (partial(1, 5), partial(1, 6), True),
        (partial(1, 5), partial(1, 5), True),  # a replay of the same report
        (partial(1, 5), partial(1, 4), False),  # late, out of order
        (partial(1, 500), partial(2, -1), True),  # a rebuilt partition wins over its old owner
        (partial(2, -1), partial(1, 900), False),  # the old owner's late report loses
    ],
)
def test_newer_partial(stored, incoming, accepted) -> None:
    assert newer_partial(stored, incoming) is accepted


def test_sum_partials_ignores_windows_of_partitions_still_on_the_old_cut() -> None:
    yearly = Cut(date(1970, 1, 1), 12, "UTC")
    sums = sum_partials(
        [
            partial(1, 1, windows={"2026-02-15": 2, "2026-03-15": 1}, total=3),
            partial(1, 1, windows={"2026-02-15": 1}, total=1),
            partial(1, 1, cut=yearly, windows={"2026-01-01": 4}, total=4),
        ],
        MONTHLY,
    )
    assert sums == TenantSums({"2026-02-15": 3, "2026-03-15": 1}, total=8)


def test_first_publication_has_the_current_window_even_when_empty() -> None:
    plan = plan_publication(MONTHLY, {}, TenantSums({}, 0), NOW)
    assert [(u.window.start, u.active, u.total) for u in plan.updates] == [
        (date(2026, 3, 15), 0, 0)
    ]
    assert plan.published == {"2026-03-15": [0, 0]}


def test_only_changed_windows_are_republished() -> None:
    published = {"2026-02-15": [3, 4], "2026-03-15": [1, 4]}
    plan = plan_publication(
        MONTHLY, published, TenantSums({"2026-02-15": 3, "2026-03-15": 2}, 5), NOW
    )
    assert [(u.window.start, u.active, u.total) for u in plan.updates] == [
        (date(2026, 3, 15), 2, 5)
    ]
    # the past window keeps the total it was last published with
    assert plan.published == {"2026-02-15": [3, 4], "2026-03-15": [2, 5]}


def test_current_window_follows_total_changes() -> None:
    published = {"2026-02-15": [3, 4], "2026-03-15": [1, 4]}
    plan = plan_publication(
        MONTHLY, published, TenantSums({"2026-02-15": 3, "2026-03-15": 1}, 5), NOW
    )
    assert [(u.window.start, u.total) for u in plan.updates] == [(date(2026, 3, 15), 5)]


def test_nothing_changes_nothing_is_published() -> None:
    published = {"2026-03-15": [1, 4]}
    plan = plan_publication(MONTHLY, published, TenantSums({"2026-03-15": 1}, 4), NOW)
    assert not plan.changed


def test_a_count_dropping_to_zero_is_published_as_zero() -> None:
    published = {"2026-02-15": [3, 4], "2026-03-15": [1, 4]}
    plan = plan_publication(MONTHLY, published, TenantSums({"2026-03-15": 1}, 1), NOW)
    updates = {u.window.start: u.active for u in plan.updates}
    assert updates == {date(2026, 2, 15): 0, date(2026, 3, 15): 1}


def test_recut_tombstones_windows_the_new_cut_does_not_have() -> None:
    published = {"2026-01-01": [5, 5]}  # the default yearly cut
    plan = plan_publication(MONTHLY, published, TenantSums({"2026-02-15": 5}, 5), NOW)
    assert plan.tombstones == ("2026-01-01",)
    assert sorted(plan.published) == ["2026-02-15", "2026-03-15"]


def test_new_window_by_wall_clock_gets_a_zero_record() -> None:
    published = {"2026-03-15": [4, 4]}
    later = datetime(2026, 4, 15, 0, 0, 1, tzinfo=UTC)
    plan = plan_publication(MONTHLY, published, TenantSums({"2026-03-15": 4}, 4), later)
    assert [(u.window.start, u.active, u.total) for u in plan.updates] == [
        (date(2026, 4, 15), 0, 4)
    ]


def test_republish_writes_every_record_again() -> None:
    published = {"2026-02-15": [3, 4], "2026-03-15": [1, 4]}
    plan = plan_publication(
        MONTHLY, published, TenantSums({"2026-02-15": 3, "2026-03-15": 1}, 4), NOW, republish=True
    )
    assert len(plan.updates) == 2


@pytest.mark.parametrize(
    ("limit", "pct", "learners"),
    [(100, 80, 80), (7, 80, 6), (3, 90, 3), (10, 100, 10), (1, 1, 1), (999, 1000, 9990)],
)
def test_threshold_learners_is_the_ceiling(limit: int, pct: int, learners: int) -> None:
    assert threshold_learners(limit, pct) == learners


def test_utilization() -> None:
    assert utilization_pct(1, 3) == 33.33
    assert utilization_pct(2, 3) == 66.66  # cut, not rounded
    assert utilization_pct(5, None) is None


@pytest.mark.parametrize("limit", [100, 10_000, 100_000, 999_999, 1_000_000_000])
def test_utilization_reaches_100_only_at_the_limit(limit: int) -> None:
    assert utilization_pct(limit - 1, limit) < 100.0
    assert utilization_pct(limit, limit) == 100.0
    assert utilization_pct(limit + 1, limit) >= 100.0


def test_merge_partials_keeps_the_newer_report_per_partition() -> None:
    from streams.domain.tenants import merge_partials

    stored = {"0": partial(1, 10, total=3), "1": partial(1, 10, total=4)}
    merged = merge_partials(
        stored,
        {"0": partial(1, 9, total=99), "1": partial(1, 11, total=5), "2": partial(2, 0, total=1)},
    )
    assert {p: v["total"] for p, v in merged.items()} == {"0": 3, "1": 5, "2": 1}
    assert stored["1"]["total"] == 4, "the stored mapping is not mutated"


def test_a_new_cut_is_ready_only_when_every_learner_partition_reported_on_it() -> None:
    yearly = Cut(date(1970, 1, 1), 12, "UTC")
    partials = {"0": partial(1, 1), "1": partial(1, 1, cut=yearly), "2": partial(1, 1)}
    assert not publication_ready(partials, MONTHLY, partitions=3, licensed=True)
    partials["1"] = partial(1, 2)
    assert publication_ready(partials, MONTHLY, partitions=3, licensed=True)
    # a licensed tenant: every partition received the license and reports on it
    assert not publication_ready({"0": partial(1, 1)}, MONTHLY, partitions=3, licensed=True)


def test_an_unlicensed_tenant_is_reported_by_the_partitions_that_hold_its_learners() -> None:
    yearly = Cut(date(1970, 1, 1), 12, "UTC")
    assert publication_ready({"2": partial(1, 1, cut=yearly)}, yearly, partitions=3, licensed=False)


def test_a_partition_on_another_cut_holds_publication_also_when_the_cut_came_back() -> None:
    # A -> B -> A: the tenant published under A, and is on A again; a partition that last
    # reported on B has not come back yet: its learners would be missing (bug: license flap)
    quarterly = Cut(date(2026, 1, 15), 3, "UTC")
    partials = {"0": partial(1, 9), "1": partial(1, 7, cut=quarterly)}
    assert not publication_ready(partials, MONTHLY, partitions=2, licensed=True)
