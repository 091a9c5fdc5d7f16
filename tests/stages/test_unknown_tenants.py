"""A tenant the service never knew stays unknown: the contract answers 404 for "a tenant with no
license and no attempts", so no count record may say 0 for it (a dashboard would list it). A
license tombstone of such a tenant (an LMS clearing test tenants it never used) used to publish
one, through the tenant stage and through the empty reports of every learner partition's re-cut.
"""

from __future__ import annotations

from schemas import topics
from tests.stages.pipeline import Pipeline, launch, license_

JAN = "2026-01-01"


def tenants_counted(p: Pipeline) -> set[str]:
    return {tenant for tenant, _ in p.counts()}


def test_a_license_tombstone_of_an_unknown_tenant_publishes_nothing() -> None:
    p = Pipeline(partitions=2)
    p.produce(topics.LICENSES, None, key=b"ghost")
    p.flow()

    assert tenants_counted(p) == set()
    assert [r.key for r in p.records(topics.ACTIVE_LEARNER_COUNTS)] == []


def test_a_tenant_known_by_its_license_or_its_launches_keeps_its_record() -> None:
    p = Pipeline(partitions=2)
    p.produce(topics.LICENSES, license_("acme", learner_limit=10))
    p.produce(topics.LAUNCHES, launch("solo", "l1", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    assert tenants_counted(p) == {"acme", "solo"}
    assert p.counts()[("acme", JAN)]["active_learners"] == 0  # licensed: a record of 0
    assert p.counts()[("solo", JAN)]["active_learners"] == 1

    p.produce(topics.LICENSES, None, key=b"acme")  # its license removed: known all the same
    p.flow()
    record = p.counts()[("acme", JAN)]
    assert (record["licensed"], record["active_learners"]) == (False, 0)
