"""The hold on thresholds during a physical deletion, checked by the simulator's oracle
(`oracle.check_threshold_holds`): while a physical deletion of a tenant is open, its parts reach
the learner partitions one after another, and a threshold evaluated in between would mail a
crossing at a count on the way. The oracle reads the tenant-state changelog, flush by flush,
and finds every new crossing written while a hold was open before and after its flush."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas import topics
from streams.stages import keys, tenant_deletions
from streams.stages.memory import MemoryLog
from streams.stages.store import epoch_header
from streams.tools.simulate import oracle, runner
from streams.tools.simulate.runner import generate, run

T0 = datetime(2026, 4, 18, 12, 0, tzinfo=UTC)
TOPIC = topics.TENANT_STATE_CHANGELOG


def flush(log: MemoryLog, *records: tuple[bytes, Any], epoch: tuple[int, int] = (1, 1)) -> None:
    """One flush of the tenant stage: its records in one send to partition 0."""
    pairs = [(key, None if value is None else json.dumps(value).encode()) for key, value in records]
    log.append(TOPIC, 0, pairs, epoch_header(epoch))


def hold(tenant: str, request: str = "q1", since: datetime = T0) -> tuple[bytes, Any]:
    return keys.open_deletions(tenant), {request: since.isoformat()}


def release(tenant: str) -> tuple[bytes, Any]:
    return keys.open_deletions(tenant), None


def crossing(tenant: str, at: datetime = T0, number: int = 1) -> tuple[bytes, Any]:
    key = keys.pending_threshold_event(tenant, "2026-01-01", 80, number)
    event = {
        "event_id": f"e{number}",
        "tenant_id": tenant,
        "direction": "up" if number % 2 else "down",
        "active_learners": 8,
        "occurred_at": at.isoformat(),
    }
    return key, event


def test_a_crossing_while_a_deletion_holds_its_tenant_is_a_problem() -> None:
    log = MemoryLog(1)
    flush(log, hold("acme"))
    flush(log, crossing("acme", T0 + timedelta(minutes=1)))
    problems = oracle.check_threshold_holds(log)
    assert len(problems) == 1 and "deletion ['q1'] held acme" in problems[0]


def test_the_flush_that_releases_the_hold_may_evaluate() -> None:
    log = MemoryLog(1)
    flush(log, hold("acme"))
    # the changelog's ranks put the pending event ahead of the release within the flush
    flush(log, crossing("acme", T0 + timedelta(minutes=1)), release("acme"))
    assert oracle.check_threshold_holds(log) == []


def test_the_flush_that_opens_the_hold_may_have_evaluated_before_it() -> None:
    log = MemoryLog(1)
    flush(log, crossing("acme"), hold("acme"))
    assert oracle.check_threshold_holds(log) == []


def test_another_tenants_deletion_holds_nothing_of_this_one() -> None:
    log = MemoryLog(1)
    flush(log, hold("other"))
    flush(log, crossing("acme", T0 + timedelta(minutes=1)))
    assert oracle.check_threshold_holds(log) == []


def test_a_hold_past_its_limit_holds_nothing() -> None:
    log = MemoryLog(1)
    flush(log, hold("acme"))
    flush(log, crossing("acme", T0 + tenant_deletions.HOLD_LIMIT))
    assert oracle.check_threshold_holds(log) == []


def test_a_crossing_written_again_by_a_flush_that_was_not_held_is_right() -> None:
    """A crash that landed only the front of the releasing flush (the pending event ranks
    first) leaves the crossing under the hold; the replay writes both again."""
    log = MemoryLog(1)
    flush(log, hold("acme"))
    flush(log, crossing("acme", T0 + timedelta(minutes=1)))  # the front of a flush
    flush(log, crossing("acme", T0 + timedelta(minutes=1)), release("acme"), epoch=(2, 1))
    assert oracle.check_threshold_holds(log) == []


def test_a_deposed_owners_late_flush_is_left_out() -> None:
    log = MemoryLog(1)
    flush(log, hold("acme"), epoch=(2, 1))
    flush(log, crossing("acme", T0 + timedelta(minutes=1)), epoch=(1, 1))
    assert oracle.check_threshold_holds(log) == []


@pytest.fixture
def no_hold(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A tenant stage that never holds its thresholds during a deletion."""
    monkeypatch.setattr(
        tenant_deletions.TenantDeletions, "holds_thresholds", lambda *_: False, raising=True
    )
    yield


# each failed with the hold taken out, once runs drew how many deletions hold (5 of 300 seeds
# from 11340000; 11340058 failed before that draw, when every deletion held)
HELD_SEEDS = [11340001, 11340062, 11340182]


def test_seeds_that_evaluate_during_a_deletion_are_clean() -> None:
    for seed in [*HELD_SEEDS, 11340058, 11340229, 11340299]:
        result = run(generate(seed))
        assert result.ok, f"seed {seed}: {result.problems[:3]}"


def test_the_simulator_finds_a_stage_that_does_not_hold(no_hold: None) -> None:
    for seed in HELD_SEEDS:
        problems = run(generate(seed)).problems
        assert any("evaluated while deletion" in problem for problem in problems), seed


def test_runs_draw_how_many_deletions_hold_and_give_it_back() -> None:
    kept = tenant_deletions.OPEN_KEPT
    drawn = [runner._hold_bounds(seed)[0][2] for seed in range(60)]
    assert {1, 2, kept} <= set(drawn)
    low = drawn.index(1)
    with runner._patched(runner._hold_bounds(low)):
        assert tenant_deletions.OPEN_KEPT == 1
    assert kept == tenant_deletions.OPEN_KEPT
