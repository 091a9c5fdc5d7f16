"""A review of 2026-12-02 (helper-51): a deletion's parts applied on both sides of a license
that changes the windows.

Each learner partition applies a license and a deletion's parts in the order they reach its
log: the tenant stage sends the parts, ingest the license, and Kafka appends each partition of a
produce request on its own (here: a crash that landed the parts in one partition only, and
their replay after the license). Each part reported its windows on the cut of its partition at
that moment, and the receipt added them up by start date: windows of two cuts in one receipt
(a 12-month window that no longer exists, a 1-month one with half its learners), and with two
parts in one partition an `active_after` below zero. The guard rail that reads a preview's
windows (`force` above DELETION_MAX_SHARE) reads the same numbers. Now the tenant stage names
the cut it splits the request under, and every part reports on that cut.
"""

from __future__ import annotations

import pytest

from schemas import topics
from streams.stages import commands, tenant_deletions
from tests.stages.pipeline import Pipeline, deletion, launch, learners_in, license_

LICENSE = {"learner_limit": 100, "thresholds": [100]}


def _learner_log(p: Pipeline, partition: int) -> list[str]:
    out = []
    for record in p.world.log.records(topics.LEARNER_COMMANDS, partition):
        command = commands.decode(record.value)
        if isinstance(command, commands.License):
            out.append(f"License({(command.license or {}).get('window_months')})")
        elif isinstance(command, commands.DeletionPart):
            out.append(f"Part{command.part}")
    return out


def _acme(p: Pipeline) -> tuple[list[str], list[str]]:
    p.produce(topics.LICENSES, license_("acme", **LICENSE))
    n = p.world.partitions
    first, second = learners_in("acme", 0, n, 5), learners_in("acme", 1 % n, n, 5)
    if n == 1:
        second = [f"m{i}" for i in range(5)]
    for learner in first + second:
        p.produce(topics.LAUNCHES, launch("acme", learner, "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    p.settle()
    assert p.active("acme", "2026-01-01") == 10
    return first, second


def _parts_then_license(p: Pipeline, request: dict, landing) -> None:
    """The tenant stage's send of the parts lands only `landing` and the worker dies; the new
    license (1-month windows) is routed before the tenant stage replays the request."""
    p.produce(topics.ATTEMPT_DELETIONS, request)
    p.run(topics.ATTEMPT_DELETIONS)
    p.crash_at("w0", "send", topics.TENANT_COMMANDS, countdown=2, landing=landing)
    p.run(topics.TENANT_COMMANDS)
    assert not p.worker().alive
    p.restart()
    p.produce(topics.LICENSES, license_("acme", **LICENSE, window_months=1))
    p.run(topics.LICENSES)
    p.flow()
    p.settle()


@pytest.mark.parametrize("mode", ["physical", "preview", "logical"])
def test_parts_on_both_sides_of_a_recut_report_one_cut(mode: str) -> None:
    p = Pipeline(partitions=2)
    first, second = _acme(p)
    p.advance(60)
    request = deletion("acme", "r1", mode, p.now, learner_ids=[first[0], second[0]])
    _parts_then_license(
        p, request, lambda tp, r: len(r) if tp == (topics.LEARNER_COMMANDS, 0) else 0
    )
    assert _learner_log(p, 0)[-3:] == ["Part0", "License(1)", "Part0"]
    assert _learner_log(p, 1)[-2:] == ["License(1)", "Part1"]
    receipts = {str(r): r for r in p.receipts("r1")}
    [receipt] = receipts.values()
    # the windows of the cut the request was split under (12 months), whole
    windows = [{"start": "2026-01-01", "active_before": 10, "active_after": 8}]
    assert receipt["windows"] == ([] if mode == "logical" else windows)
    assert receipt["attempts_affected"] == 2
    assert p.active("acme", "2026-02-01") == (8 if mode == "physical" else 10)
    assert p.check() == []


def test_two_parts_of_one_partition_around_a_recut(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two parts of one partition, the license between them: before, the receipt took the
    first part's counts (12-month windows) and the second's losses (1-month windows):
    `[{2026-01-01: 10 -> 9}, {2026-02-01: 0 -> -1}]`."""
    monkeypatch.setattr(tenant_deletions, "PART_MAX_BYTES", 1)  # a part per learner
    p = Pipeline(partitions=1)
    first, _ = _acme(p)
    p.advance(60)
    request = deletion("acme", "r1", "physical", p.now, learner_ids=first[:2])
    _parts_then_license(p, request, lambda tp, r: 1)
    assert _learner_log(p, 0)[-4:] == ["Part0", "License(1)", "Part0", "Part1"]
    [receipt] = {str(r): r for r in p.receipts("r1")}.values()
    assert receipt["windows"] == [{"start": "2026-01-01", "active_before": 10, "active_after": 8}]
    assert p.active("acme", "2026-02-01") == 8
    assert p.check() == []
