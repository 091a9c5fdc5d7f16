"""A review of 2026-12-02 (helper-51): the license tombstone "ghost tenant".

A license tombstone makes the tenant fall back to the default license. Before the fix, the
tenant stage then published the default cut's current window (0 active, `licensed: false`)
whatever the tenant held: a tenant with no license and no attempt stayed on the count topic
for good (a new zero record every 1 January), so the read model listed it in
`GET /api/tenants` and answered its details with 200, where CONTRACT.md says "404 for a
tenant with no license and no attempts". A tombstone under a key no license ever had made
such a tenant out of nothing. Now such a tenant has no count record (every record it had is
tombstoned); one that keeps attempts is counted unlicensed, as before.
"""

from __future__ import annotations

from schemas import topics
from streams.http.read_model import ReadModel
from tests.stages.pipeline import Pipeline, deletion, launch, license_


def _read_model(p: Pipeline) -> ReadModel:
    """What the HTTP side answers from: the licenses and count topics, read in order."""
    model = ReadModel()
    for record in p.records(topics.LICENSES):
        model.apply_license(record.key, record.value)
    for record in p.records(topics.ACTIVE_LEARNER_COUNTS):
        model.apply_count(record.key, record.value)
    return model


def test_a_tombstone_under_a_key_no_license_had_makes_no_tenant() -> None:
    p = Pipeline(partitions=2)
    p.produce(topics.LICENSES, None, key=b"nobody")
    p.flow()
    p.settle()
    assert p.counts() == {}
    assert _read_model(p).tenants() == []
    assert p.check() == []


def test_a_licensed_tenant_without_attempts_is_gone_after_its_tombstone() -> None:
    p = Pipeline(partitions=2)
    p.produce(topics.LICENSES, license_("acme", learner_limit=10, thresholds=[100]))
    p.flow()
    assert set(p.counts()) == {("acme", "2026-01-01")}
    p.produce(topics.LICENSES, None, key=b"acme")
    p.flow()
    p.settle()
    assert p.counts() == {}
    assert _read_model(p).tenants() == []
    # a year later no new window record brings it back
    p.advance(366 * 86400)
    p.settle()
    assert p.counts() == {}
    # licensed again, it is back with its current window
    p.produce(topics.LICENSES, license_("acme"))
    p.flow()
    p.settle()
    assert [r["licensed"] for r in p.counts().values()] == [True]
    assert p.check() == []


def test_a_tombstoned_tenant_with_attempts_stays_unlicensed_until_they_are_deleted() -> None:
    p = Pipeline(partitions=2)
    p.produce(
        topics.LICENSES,
        license_(
            "acme", learner_limit=2, thresholds=[100], cycle_start="2026-01-15", window_months=3
        ),
    )
    for n in range(2):
        p.produce(topics.LAUNCHES, launch("acme", f"l{n}", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    p.produce(topics.LICENSES, None, key=b"acme")
    p.flow()
    p.settle()
    [(key, record)] = p.counts().items()
    assert key == ("acme", "2026-01-01") and record["licensed"] is False
    assert (record["active_learners"], record["total_learners"]) == (2, 2)
    assert _read_model(p).tenants() == ["acme"]
    p.advance(60)
    p.produce(
        topics.ATTEMPT_DELETIONS,
        deletion("acme", "r1", "physical", p.now, learner_ids=["l0", "l1"]),
    )
    p.flow()
    p.settle()
    assert p.counts() == {}, "no license and no attempt: no tenant"
    assert _read_model(p).tenants() == []
    assert [r["attempts_affected"] for r in p.receipts("r1")][:1] == [2]
    assert p.check() == []
