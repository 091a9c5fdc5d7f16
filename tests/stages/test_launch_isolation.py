"""A launch the learner stage cannot apply costs no other launch of its command.

A `learner-commands` record carries the launches of many tenants' learners for one partition.
When applying them failed, the command was tried again and then dead-lettered whole: one launch
that kept failing (a learner's record of windows over Kafka's limit did, before the accepted
years ended at 2500) took every other launch of the command with it. Now the launches of a
command that failed are its parts (`LearnerStage.split`): the loop applies them one at a time,
each tried three times (without pauses: such a launch comes back with every command of its
learner, and pauses would stall the partition) and given up alone, so only the one that keeps
failing is dead-lettered.
"""

from __future__ import annotations

from typing import Any

import pytest

from schemas import topics
from streams.stages import ingest, learners
from tests.stages.pipeline import Pipeline, launch

AT = "2026-03-10T10:00:00Z"
CALLS: list[int] = []  # how many launches each call of `apply_attempts` was given


def _failing_for(learner_id: str, times: float) -> Any:
    """`apply_attempts` that raises while a launch of `learner_id` is among its items, the
    first `times` times it sees one."""
    real = learners.apply_attempts
    seen = {"failures": 0}

    def apply_attempts(items: Any, reads: Any, cut_of: Any) -> Any:
        items = list(items)
        CALLS.append(len(items))
        if any(item.learner_id == learner_id for item in items) and seen["failures"] < times:
            seen["failures"] += 1
            raise RuntimeError(f"cannot apply a launch of {learner_id}")
        return real(items, reads, cut_of)

    return apply_attempts


def _produce_one_command(p: Pipeline) -> None:
    for n, learner in enumerate(["l1", "bad", "l2", "l3"]):
        tenant = "acme" if n % 2 == 0 else "globex"
        p.produce(topics.LAUNCHES, launch(tenant, learner, "a1", AT))
    p.produce(topics.LAUNCHES, launch("globex", "l4", "a1", AT))


def test_a_launch_that_keeps_failing_is_dead_lettered_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(learners, "apply_attempts", _failing_for("bad", float("inf")))
    p = Pipeline(partitions=1)
    _produce_one_command(p)
    CALLS.clear()
    p.settle()
    # once whole, then one launch at a time: "bad" three times
    assert CALLS == [5, 1, 1, 1, 1, 1, 1, 1]
    # one part given up (the launch of "bad", tried three times), not the command
    assert len(p.world.gave_up) == 1
    [letter] = p.dead_letters()
    assert letter["reason"] == "invalid"
    assert (
        "could not apply this launch (RuntimeError: cannot apply a launch of bad)"
        in (letter["detail"])
    )
    assert letter["source"] == {"topic": topics.LAUNCHES, "partition": 0, "offset": 1}
    assert p.active("acme", "2026-01-01") == 2  # l1, l2
    assert p.active("globex", "2026-01-01") == 2  # l3, l4: not "bad"


def test_a_large_launch_given_up_alone_keeps_its_original_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A launch over 1 KiB travels by reference; given up as a part, its dead letter read it
    back no more and carried `raw: null` (found by a review; the contract says `raw` is the
    original value)."""
    monkeypatch.setattr(learners, "apply_attempts", _failing_for("bad", float("inf")))
    p = Pipeline(partitions=1)
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", AT))
    p.produce(topics.LAUNCHES, launch("acme", "bad", "a1", AT, note="x" * 2_000))
    p.produce(topics.LAUNCHES, launch("acme", "l2", "a1", AT))
    p.settle()
    [letter] = p.dead_letters()
    assert letter["source"] == {"topic": topics.LAUNCHES, "partition": 0, "offset": 1}
    assert letter["raw"] is not None and '"bad"' in letter["raw"] and "x" * 2_000 in letter["raw"]
    assert "could not be read back" not in letter["detail"]
    assert p.active("acme", "2026-01-01") == 2


def test_a_passing_failure_costs_no_launch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(learners, "apply_attempts", _failing_for("bad", 2))
    p = Pipeline(partitions=1)
    _produce_one_command(p)
    CALLS.clear()
    p.settle()
    assert CALLS == [5, 1, 1, 1, 1, 1, 1]  # once whole, then by launch: "bad" twice
    assert p.world.gave_up == [] and p.dead_letters() == []
    assert p.active("acme", "2026-01-01") == 2
    assert p.active("globex", "2026-01-01") == 3
    assert p.check() == []


def test_a_launch_that_routing_fails_on_is_dead_lettered_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Routing a fetch of launches is pure: a launch it failed on (a bug) failed the whole
    fetch every time, and the launch reader read it again for good. Now the fetch is routed
    again one launch at a time, and only that launch is dead-lettered."""
    real = ingest.fast_launch

    def fast_launch(raw: bytes) -> Any:
        if b'"bad"' in raw:
            raise RuntimeError("cannot route it")
        return real(raw)

    monkeypatch.setattr(ingest, "fast_launch", fast_launch)
    # the Python rules fail here: the C router, which reads these launches itself, stays out
    # (its own failure: the test below)
    monkeypatch.setattr(ingest, "NATIVE_ROUTER", False)
    p = Pipeline(partitions=2)
    _produce_one_command(p)
    p.settle()
    [letter] = p.dead_letters()
    assert letter["reason"] == "invalid" and '"bad"' in letter["raw"]
    assert "could not route this launch (RuntimeError: cannot route it)" in letter["detail"]
    assert p.active("acme", "2026-01-01") == 2
    assert p.active("globex", "2026-01-01") == 2


class _BrokenRouter:
    calls = 0

    @classmethod
    def route(cls, *args: Any) -> Any:
        cls.calls += 1
        raise MemoryError("the C router failed")


def test_a_failing_c_router_leaves_the_fetch_to_the_rules_in_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever fails in the C router (a bug, memory) fails the fetch's routing as a bug in
    the Python rules would: the fetch is routed again one launch at a time, in Python, and
    every launch counts."""
    monkeypatch.setattr(ingest, "_router", _BrokenRouter)
    monkeypatch.setattr(ingest, "NATIVE_ROUTER", True)
    p = Pipeline(partitions=2)
    _produce_one_command(p)
    p.settle()
    assert _BrokenRouter.calls >= 1
    assert p.dead_letters() == []
    assert p.active("acme", "2026-01-01") == 2
    assert p.active("globex", "2026-01-01") == 3
