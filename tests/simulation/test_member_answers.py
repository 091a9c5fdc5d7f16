"""The simulator's answer to the group coordinator's "no" (SIMULATE_MEMBER_FAULTS=1) is the
worker's (streams/worker/takeovers.py `run` and `give_up`, the stages' `release_partitions`).

In the worker each stage's takeover is an on_recover callback of its own, run concurrently:
the learner's releases its stage's counters first, and either asks the coordinator its own
question. A "no" to a member makes `run` give that stage's partitions up at once (the learner
stage's counters, then its ownership) and ask for a rebalance, which the coordinator has begun;
nothing is sent, and no takeover of that generation begins again. The simulator stopped the
whole takeover at the first "no" and released nothing: after a "no" to the tenant stage's
question the learner stage's takeover never ran, and the counters of its previous assignment
stayed until the next takeover, for the partial-count timer to send (SIMULATE_TAKEOVER_TIMERS).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from schemas import topics
from streams.stages.store import LEARNER, TENANT
from streams.tools.simulate.runner import run_task
from streams.tools.simulate.world import SimWorker, World

START = datetime(2026, 3, 2, 10, tzinfo=UTC)


class Order:
    """The takeover's draws: which stage goes first (`random() < 0.3`: the tenant stage), and
    no pause before either."""

    def __init__(self, tenant_first: bool) -> None:
        self.draws = [0.0 if tenant_first else 0.9]

    def random(self) -> float:
        return self.draws.pop(0) if self.draws else 0.9


def _settle(world: World) -> None:
    while world.busy():
        world.advance()


def _counting_world() -> tuple[World, SimWorker]:
    """One worker that took its partitions over, counted a launch and holds its counters."""
    world = World(17_030_000, 1, 1, START)
    world.release_at_takeover = True  # as SIMULATE_TAKEOVER_TIMERS: kept until a takeover
    worker = world.workers["w0"] = SimWorker(world, "w0")
    world.rebalance()
    world.run(worker, "takeover", world.unit_takeover(worker))
    _settle(world)
    value = {
        "event_id": "e-1",
        "tenant_id": "acme",
        "learner_id": "l1",
        "element_id": "e1",
        "attempt_id": "a1",
        "launched_at": START.isoformat(),
    }
    world.produce(topics.LAUNCHES, b"acme/l1", json.dumps(value).encode(), 0)
    for task in ("launches", topics.LEARNER_COMMANDS):
        run_task(world, worker, task, 10)
        _settle(world)
    assert worker.learner.counters.partitions() == {0}
    return world, worker


@pytest.mark.parametrize("tenant_first", [True, False], ids=["tenant-first", "learner-first"])
def test_a_no_gives_the_stage_up_at_once_and_the_other_stage_asks_its_own_question(
    tenant_first: bool,
) -> None:
    world, worker = _counting_world()
    world.rebalance()  # (the counters stay until the next takeover releases them)
    assert worker.learner.counters.partitions() == {0}
    changelogs = {
        topic: len(world.log.records(topic, 0))
        for topic in (topics.LEARNER_STATE_CHANGELOG, topics.TENANT_STATE_CHANGELOG)
    }
    world.takeover_rng = Order(tenant_first)  # type: ignore[assignment]
    world.member_plans["w0"] = [["no", 1]]

    # (no pause drawn: both stages ask before the rebalance under way ends)
    world.run(worker, "takeover", world.unit_takeover(worker))

    assert "takeover" not in worker.activities
    assert world.rebalance_due, "the coordinator's rebalance is under way"
    assert worker.learner.counters.partitions() == set(), "the learner counters released at once"
    first, second = (TENANT, LEARNER) if tenant_first else (LEARNER, TENANT)
    gave_up = [line.strip() for line in world.trace if "gives up" in line]
    assert gave_up == [f"w0: gives up its {s} partitions" for s in (first, second)]
    assert worker.ownership.partitions(LEARNER) == worker.ownership.partitions(TENANT) == []
    assert not worker.ready
    assert {topic: len(world.log.records(topic, 0)) for topic in changelogs} == changelogs, (
        "a takeover given up writes nothing"
    )
    run_task(world, worker, topics.LEARNER_COMMANDS, 10)
    assert "takeover" not in worker.activities, "no takeover of the refused generation again"

    world.advance()  # the rebalance under way ends; its takeover owns the partitions
    assert not world.rebalance_due
    run_task(world, worker, topics.LEARNER_COMMANDS, 10)
    _settle(world)
    assert worker.ready
    assert worker.ownership.partitions(LEARNER) == worker.ownership.partitions(TENANT) == [0]
    assert worker.learner.counters.partitions() == {0}
