"""A crash at every send of the tenant stage while a physical deletion's part reports come in,
each landing any prefix of its groups: the reports are records of their own now
(`delr/{tenant}/{request}/{part}`), named by the request's record and dropped once it holds the
receipt, so a crash must never leave the record naming a report that did not land, nor drop
reports before the receipt is stored. Afterwards the receipt is exact, and it is the only one."""

from __future__ import annotations

import pytest

from schemas import topics
from streams.stages import keys
from tests.stages.pipeline import (
    PREFIX_LANDINGS,
    Pipeline,
    deletion,
    launch,
    learners_in,
    license_,
)

PARTITIONS = 3
WINDOW = "2026-01-01"


def _run(countdown: int, landing: str) -> bool:
    p = Pipeline(partitions=PARTITIONS)
    p.produce(topics.LICENSES, license_("acme", cycle_start=WINDOW, learner_limit=10))
    for partition in range(PARTITIONS):
        for learner in learners_in("acme", partition, PARTITIONS, 2):
            p.produce(topics.LAUNCHES, launch("acme", learner, "a", "2026-02-10T10:00:00Z"))
    p.settle()
    assert p.active("acme", WINDOW) == 6
    p.advance(60)
    p.produce(
        topics.ATTEMPT_DELETIONS,
        deletion("acme", "r1", "physical", p.now, older_than=p.now.isoformat()),
    )
    p.run(topics.ATTEMPT_DELETIONS)
    p.run(topics.TENANT_COMMANDS)  # the request: its parts go out
    p.run(topics.LEARNER_COMMANDS)  # every part applied: the reports wait in tenant-commands
    p.crash_at(
        "w0", "send", topics.TENANT_COMMANDS, countdown=countdown, landing=PREFIX_LANDINGS[landing]
    )
    p.run(topics.TENANT_COMMANDS, limit=1)  # a report a flush
    crashed = p.recover()
    p.flow()
    p.settle()
    receipts = p.receipts("r1")
    assert receipts, "the request never got its receipt"
    assert all(r == receipts[0] for r in receipts), "two different receipts for one request"
    assert receipts[0]["attempts_affected"] == 6 and receipts[0]["learners_affected"] == 6
    assert receipts[0]["windows"] == [{"start": WINDOW, "active_before": 6, "active_after": 0}]
    assert p.active("acme", WINDOW) == 0
    state = p.worker().state
    left = [
        key
        for partition in range(PARTITIONS)
        for key in state.partition(keys.TENANT_STATE, partition).rows
        if key.startswith(keys.DELETION_REPORTS)
    ]
    assert left == [], "reports kept after the receipt"
    assert p.check() == []
    return crashed


@pytest.mark.parametrize("landing", sorted(PREFIX_LANDINGS))
def test_sweep(landing: str) -> None:
    crashes = 0
    for countdown in range(1, 12):
        crashed = _run(countdown, landing)
        crashes += crashed
        if not crashed:
            break
    assert crashes >= PARTITIONS  # a crash at the send of every report's flush at least
