"""A report that needs another worker's partition while this worker cannot read the cluster key
(Kafka unreachable, the `cluster-key` topic slow): the asking side's `reports._remote` awaits
`cluster_key()` outside its try, so the exception (kafka-python's timeout, NoBrokersAvailable, the
RuntimeError of cluster_key.py) is no ApiError: the answer is a 500 with a traceback, where the
same failure on the answering side is a one-line 503 (report_views.PartitionReport).
CONTRACT.md: "errors are {"error": "one line"}"; reports.py's own docstring: "ApiError(503)
when it fails, before or while it answers" (review 2026-12-03)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from schemas import topics
from tests.stages.pipeline import Pipeline, launch, license_
from tests.stages.test_report_views import wire
from tests.unit.web_harness import READ_ALL, Server, bearer, isolate

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)


@pytest.fixture
def wired(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, server: Server) -> Pipeline:
    isolate(monkeypatch, tmp_path)  # obtain_cluster_key raises TimeoutError, as kafka-python does
    p = Pipeline(partitions=2, start=NOW)
    p.produce(topics.LICENSES, license_("acme", cycle_start="2026-01-01", window_months=1))
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a", "2026-03-02T10:00:00Z"))
    p.settle()
    # partition 0 here, partition 1 on another worker
    wire(monkeypatch, p, NOW, http=True, placement={0: None, 1: "http://127.0.0.1:9"})
    return p


@pytest.mark.parametrize(
    "path",
    [
        "/api/tenants/acme/windows/2026-03-01/learners?format=csv",
        "/api/tenants/acme/learners",
        "/api/tenants/acme/windows/2026-03-01/groups",
        "/api/tenants/acme/forecast",
        "/api/tenants/acme/advisor",
    ],
)
def test_an_unreadable_cluster_key_is_a_one_line_503(
    wired: Pipeline, server: Server, path: str
) -> None:
    answer = server.call("GET", path, headers=bearer(READ_ALL))
    assert answer.status == 503, (answer.status, answer.text[:200])
    assert "error" in answer.json()
