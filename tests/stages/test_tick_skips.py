"""A tick publishes only the tenants it may change something for.

Every 15 s the tenant stage's tick published every tenant of its partition again: with 10,000
tenants of 24 monthly windows that was seconds of every tick, for a publication that wrote
nothing. A tenant's publication depends on the clock only through its current window, so a
tenant whose last publication went all the way (counts and thresholds, durable) in the window
the tick's `now` is in, with no command about it since, is skipped. The simulator publishes
every skipped tenant all the same in a savepoint and reports a skip that would have written
(`TenantStage(unsafe_skip=...)`); these tests pin the cases one by one, and that the proof
itself catches a wrong skip.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from schemas import topics
from streams.domain.partitioning import tenant_partition
from streams.stages import keys
from tests.stages import threshold_fuzz
from tests.stages.pipeline import Pipeline, launch, license_

TENANTS = ("acme", "beta", "gamma")


def _tick_tenants(outcome: str) -> float:
    return REGISTRY.get_sample_value("active_learners_tick_tenants_total", {"outcome": outcome})


def _tick(p: Pipeline, seconds: float = 15) -> tuple[float, float]:
    """Advance the clock, let the timers tick; the tenants the ticks published and skipped."""
    published, skipped = _tick_tenants("published"), _tick_tenants("skipped")
    p.advance(seconds)
    p.settle()
    return _tick_tenants("published") - published, _tick_tenants("skipped") - skipped


def _three_tenants() -> Pipeline:
    """Three tenants on monthly windows, each with a learner; the month ends in 11 days."""
    p = Pipeline(partitions=2)
    for tenant in TENANTS:
        p.produce(
            topics.LICENSES,
            license_(tenant, cycle_start="2026-01-01", window_months=1, learner_limit=10),
        )
    p.settle()
    for tenant in TENANTS:
        p.produce(topics.LAUNCHES, launch(tenant, "l1", "a1", p.now.isoformat()))
    p.settle()
    return p


def test_a_tick_inside_the_window_skips_every_settled_tenant() -> None:
    p = _three_tenants()
    counts = p.records(topics.ACTIVE_LEARNER_COUNTS)
    assert _tick(p) == (0, 3)
    assert p.records(topics.ACTIVE_LEARNER_COUNTS) == counts
    assert p.world.bugs == []  # every skip was proven: its publication wrote nothing


def test_a_tick_in_a_new_window_publishes_every_tenant_and_its_zero_record() -> None:
    p = _three_tenants()
    _tick(p)
    published, skipped = _tick(p, timedelta(days=12).total_seconds())
    assert (published, skipped) == (3, 0)
    for tenant in TENANTS:
        assert p.active(tenant, "2026-03-01") == 1
        assert p.active(tenant, "2026-04-01") == 0  # the new window's record
    assert _tick(p) == (0, 3)  # settled again in the new window


def test_a_command_about_a_tenant_has_the_next_tick_publish_it() -> None:
    p = _three_tenants()
    _tick(p)
    # a license the stage takes, then a tick before its partials: the license's publication
    # waits for the re-cut (not all the way), so the tenant is not settled
    p.produce(
        topics.LICENSES,
        license_("beta", cycle_start="2026-01-15", window_months=1, learner_limit=10),
    )
    p.run(topics.LICENSES)
    p.run(topics.TENANT_COMMANDS)
    p.advance(15)
    p.run("tick")
    p.run(topics.TENANT_COMMANDS)
    partition = tenant_partition("beta", p.world.partitions)
    assert (partition, "beta") not in p.worker().tenant._settled
    p.settle()
    assert p.active("beta", "2026-03-15") == 1
    assert p.world.bugs == []


def test_a_takeover_forgets_what_the_stage_knew_of_its_partition() -> None:
    p = _three_tenants()
    _tick(p)
    w = p.worker()
    assert sorted(w.tenant._settled) == [(0, "acme"), (1, "beta"), (1, "gamma")]
    p.world.run(w, "takeover-outputs", w.tenant.take_over_outputs(w.batch(tenant=True), 1, p.now))
    while "takeover-outputs" in w.activities:
        p.world.advance()
    # its state was restored from the changelog: partition 1's tenants are published again
    assert sorted(w.tenant._settled) == [(0, "acme")]
    assert _tick(p) == (2, 1)
    assert _tick(p) == (0, 3)
    assert p.world.bugs == []


def test_window_records_moved_past_their_pending_events_are_evaluated_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """confirm() moves a window record that a crash left behind its pending events: the
    tenant's threshold state changed within the tick, which then publishes it (seed 21144 of
    the threshold fuzzer with older records found the tick skipping such a tenant)."""
    monkeypatch.setattr(threshold_fuzz, "LEGACY", [True])
    assert threshold_fuzz.one(21144) == []


def test_the_proof_reports_a_skip_that_would_have_written() -> None:
    """A state change behind the stage's back (no command, no takeover) is what a wrong skip
    looks like: the simulator's proof must name it."""
    p = _three_tenants()
    _tick(p)
    partition = tenant_partition("acme", p.world.partitions)
    rows = p.worker().state.partition(keys.TENANT_STATE, partition).rows
    published = rows[keys.published("acme")]
    rows[keys.published("acme")] = published.replace(b'"2026-03-01":[1,', b'"2026-03-01":[0,')
    _tick(p)
    assert any("skipped 'acme'" in bug for bug in p.world.bugs), p.world.bugs
