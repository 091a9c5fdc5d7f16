"""A learner partition's reports while a physical deletion part removes its attempts.

The part's chunks change the counters one at a time, all under the part's offset as `seq`, and
the tenant stage keeps whichever of two reports of one (epoch, seq) lands last. A timer's report
taken between two chunks (a higher count) whose send was retried and landed after the part's
own final report overwrote it: the count went back up and stayed so until the tenant's next
report there (helper-111's residual, 2026-12-06). A tenant's reports in a partition now wait
while a part removes its attempts there: the part's own report carries its count."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import topics
from streams.stages import learner_deletions
from tests.stages.pipeline import Pipeline, deletion, launch, license_

JAN = "2026-01-01"


def nine_learners_and_a_part() -> Pipeline:
    """acme counts 9 learners; a physical request for 4 of them, split into its part (not
    applied yet)."""
    p = Pipeline(partitions=1)
    p.produce(topics.LICENSES, license_("acme", learner_limit=10, thresholds=[80]))
    for n in range(9):
        p.produce(topics.LAUNCHES, launch("acme", f"l{n}", "a1", "2026-02-10T10:00:00Z"))
    p.settle()
    assert p.active("acme", JAN) == 9
    p.advance(60)
    gone = ["l0", "l1", "l2", "l3"]
    p.produce(topics.ATTEMPT_DELETIONS, deletion("acme", "r1", "physical", p.now, learner_ids=gone))
    p.run(topics.ATTEMPT_DELETIONS)
    p.run(topics.TENANT_COMMANDS)  # the request, split into its part
    return p


def apply_the_part_with_the_timer_inside(p: Pipeline) -> list[tuple[int, bytes]]:
    """Apply the part (chunk by chunk, tried again if it fails) with the partial-count timer
    taking reports at every send; what it took."""
    worker = p.worker()
    taken: list[tuple[int, bytes]] = []
    send = worker.log.send

    async def timer_inside(groups: Any, headers: Any = None) -> Any:
        taken.extend(worker.learner.partial_commands())
        return await send(groups, headers)

    worker.log.send = timer_inside  # type: ignore[method-assign]
    p.run(topics.LEARNER_COMMANDS)
    worker.log.send = send  # type: ignore[method-assign]
    return taken


def land_late(p: Pipeline, reports: list[tuple[int, bytes]]) -> None:
    for target, command in reports:
        p.world.log.append(topics.TENANT_COMMANDS, target, [(b"partials", command)])
    p.settle()


def test_no_report_is_taken_between_a_parts_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(learner_deletions, "CHUNK_ATTEMPTS", 1)  # a learner a chunk
    p = nine_learners_and_a_part()

    taken = apply_the_part_with_the_timer_inside(p)
    p.settle()
    assert p.active("acme", JAN) == 5
    land_late(p, taken[:1])  # the first report the timer took (a send retried)
    assert p.active("acme", JAN) == 5, p.history("acme", JAN)


def test_no_report_is_taken_between_a_failed_try_of_a_part_and_its_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The part fails once after its first chunk is durable (a count of 8 under the part's
    seq) and is tried again: the hold lasts until the part is done, where it was let go at the
    failure and the timer took the 8 in the loop's pause (helper-112)."""
    monkeypatch.setattr(learner_deletions, "CHUNK_ATTEMPTS", 1)
    marks = learner_deletions.mark_removed
    calls = [0]

    def fails_once(*args: Any) -> None:
        calls[0] += 1
        if calls[0] == 3:  # the third chunk's markers: the first chunk's tombstones are durable
            raise RuntimeError("a passing failure")
        marks(*args)

    p = nine_learners_and_a_part()

    monkeypatch.setattr(learner_deletions, "mark_removed", fails_once)
    taken = apply_the_part_with_the_timer_inside(p)
    assert calls[0] > 3, "the part was tried again"
    p.settle()
    assert p.active("acme", JAN) == 5
    land_late(p, taken[:1])
    assert p.active("acme", JAN) == 5, p.history("acme", JAN)
