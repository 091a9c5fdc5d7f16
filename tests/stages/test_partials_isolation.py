"""A tenant whose partial counts fail is dead-lettered alone; the tenants sent with it go on.

A `partials` command carries the counts of every tenant a learner partition's batch touched.
Given up whole (after MAX_TRIES), a tenant that failed every time (a bug: the command is the
stages' own) froze the counts of every tenant it happened to be sent with.
"""

from __future__ import annotations

import json

import pytest

from schemas import topics
from streams.stages import commands
from streams.stages.tenants import TenantStage
from tests.stages.pipeline import Pipeline, launch, license_


def test_one_tenants_failure_leaves_the_others_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    p = Pipeline(partitions=1)
    for tenant in ("acme", "globex", "initech"):
        p.produce(topics.LICENSES, license_(tenant, window_months=1, learner_limit=10))
    p.settle()
    publish = TenantStage.publish

    def failing(self: TenantStage, batch, partition, tenant_id, now, *rest) -> bool:  # type: ignore[no-untyped-def]
        if tenant_id == "globex":
            raise RuntimeError("a bug in globex's publication")
        return publish(self, batch, partition, tenant_id, now, *rest)

    monkeypatch.setattr(TenantStage, "publish", failing)
    for tenant in ("acme", "globex", "initech"):
        for learner in ("l0", "l1"):
            p.produce(topics.LAUNCHES, launch(tenant, learner, "a0", "2026-03-10T10:00:00Z"))
    p.flow()

    partials = [
        commands.decode(r.value) for r in p.records(topics.TENANT_COMMANDS) if r.key == b"partials"
    ]
    together = [c for c in partials if isinstance(c, commands.Partials) and len(c.tenants) == 3]
    assert together, "the three tenants' counts were sent in one command"
    assert p.active("acme", "2026-03-01") == 2
    assert p.active("initech", "2026-03-01") == 2
    assert p.active("globex", "2026-03-01") == 0  # as its license published it
    [letter] = [d for d in p.dead_letters() if d["source"]["topic"] == topics.TENANT_COMMANDS]
    assert "a bug in globex's publication" in letter["detail"]
    assert list(json.loads(letter["raw"])["tenants"]) == ["globex"]  # its part alone
    assert any("dead letter of a command" in problem for problem in p.check())

    monkeypatch.setattr(TenantStage, "publish", publish)  # the bug fixed: the next count heals
    p.produce(topics.LAUNCHES, launch("globex", "l2", "a0", "2026-03-11T10:00:00Z"))
    p.settle()
    assert p.active("globex", "2026-03-01") == 3
