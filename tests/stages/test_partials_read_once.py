"""The tenant stage reads a tenant's partial counts once for a partial report.

Taking a report stores the newer partials and then publishes the tenant's counts from all of
them; the publication read them back with a second prefix scan (the two scans were about 4 %
of a worker's samples at 10,000 launches/s; one less saved 1.3 % of its CPU, docs/benchmarks.md).
The partials taken are handed on instead: one scan a tenant, and the counts are those the scan
would give.
"""

from __future__ import annotations

from collections import Counter

import pytest

from schemas import topics
from streams.stages import keys, tenants
from tests.stages.pipeline import Pipeline, launch, license_


def test_a_report_reads_each_tenants_partials_once(monkeypatch: pytest.MonkeyPatch) -> None:
    p = Pipeline(partitions=3)
    for tenant in ("acme", "globex"):
        p.produce(topics.LICENSES, license_(tenant, window_months=1, learner_limit=10))
    p.settle()
    scans: Counter[bytes] = Counter()
    scan_all = tenants._scan_all

    def counted(batch, partition, prefix):  # type: ignore[no-untyped-def]
        scans[prefix] += 1
        return scan_all(batch, partition, prefix)

    monkeypatch.setattr(tenants, "_scan_all", counted)
    for tenant in ("acme", "globex"):
        for learner in ("l0", "l1", "l2", "l3"):
            p.produce(topics.LAUNCHES, launch(tenant, learner, "a0", "2026-03-10T10:00:00Z"))
    p.flow()

    reports = [r for r in p.records(topics.TENANT_COMMANDS) if r.key == b"partials"]
    assert reports, "the launches were reported to the tenant stage"
    for tenant in ("acme", "globex"):
        # every report of the tenant: one scan of its partials, none for the publication
        taken = sum(1 for r in reports if f'"{tenant}"'.encode() in r.value)
        assert scans[keys.partials_of(tenant)] == taken
        assert p.active(tenant, "2026-03-01") == 4
    assert p.check() == []
