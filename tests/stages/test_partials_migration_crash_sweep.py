"""A crash at every send of the tenant stage while it splits an older version's one partials
record (`parts/{tenant}`) into a record per learner partition, each landing any prefix of its
groups: the split records go before the older record's deletion (keys.CHANGELOG_ORDER), so a
crash never loses a partition's partial, and the counts stay exact."""

from __future__ import annotations

import orjson
import pytest

from schemas import topics
from streams.domain.partitioning import tenant_partition
from streams.stages import keys
from tests.stages.pipeline import (
    PREFIX_LANDINGS,
    Pipeline,
    launch,
    learners_in,
    license_,
)

FIRST = "2016-01-01"


def _run(countdown: int, landing: str) -> bool:
    p = Pipeline(partitions=3)
    p.produce(topics.LICENSES, license_("acme", cycle_start=FIRST, learner_limit=10))
    learners = {part: learners_in("acme", part, 3, 3) for part in range(3)}
    for part in range(3):
        for learner in learners[part][:2]:
            p.produce(topics.LAUNCHES, launch("acme", learner, "a", "2016-02-10T10:00:00Z"))
    p.settle()
    assert p.active("acme", FIRST) == 6
    # the tenant partition's partials rewritten as an older version kept them: one record
    state = p.worker().state.partition(keys.TENANT_STATE, tenant_partition("acme", 3))
    own = [key for key in state.rows if key.startswith(keys.partials_of("acme"))]
    legacy = {
        keys.learner_partition_of_partial(key): orjson.loads(state.rows.pop(key)) for key in own
    }
    state.write({keys.legacy_partials("acme"): orjson.dumps(legacy)})
    p.restart()
    # two learner partitions report again in one flush: the split, with a crash
    for part in (0, 2):
        p.produce(topics.LAUNCHES, launch("acme", learners[part][2], "a", "2016-03-10T10:00:00Z"))
    p.run("launches")
    p.run(topics.LEARNER_COMMANDS)
    p.run("partials")
    p.crash_at(
        "w0", "send", topics.TENANT_COMMANDS, countdown=countdown, landing=PREFIX_LANDINGS[landing]
    )
    p.run(topics.TENANT_COMMANDS)
    crashed = p.recover()
    p.flow()
    p.settle()
    assert p.active("acme", FIRST) == 8
    p.produce(topics.LAUNCHES, launch("acme", learners[1][2], "a", "2016-03-10T10:00:00Z"))
    p.settle()
    assert p.active("acme", FIRST) == 9
    assert keys.legacy_partials("acme") not in state.rows
    assert p.dead_letters() == [] and p.world.gave_up == []
    assert p.check() == []
    return crashed


@pytest.mark.parametrize("landing", sorted(PREFIX_LANDINGS))
def test_sweep(landing: str) -> None:
    crashes = 0
    for countdown in range(1, 8):
        crashed = _run(countdown, landing)
        crashes += crashed
        if not crashed:
            break
    assert crashes >= 1
