"""While a worker's read model catches up after its start, the API answers 503, never a count.

Until the read model has read the count topics up to where they ended when the worker started,
a tenant's count may be an old one or 0 and the tenant itself may be missing: a billing client
that got such a figure with a 200 would bill by it. So every API call that answers from the read
model says 503 with `Retry-After` until then (after the caller is known: 401 and a tenant outside
the token still come first), while the dashboard keeps showing what it has, in red. The worker's
real aiohttp app, served in-process (tests/unit/web_harness.py: no broker).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from streams.domain.recount import cut_for
from streams.domain.windows import window_of
from streams.http import api, dashboard
from tests.unit.test_api import LICENSE, count
from tests.unit.web_harness import ADMIN_ACME, READ_ACME, READ_ALL, Server, Views, bearer, isolate

MODEL_READS = [
    "/api/tenants",
    "/api/tenants/acme",
    "/api/tenants/acme/windows",
    "/api/tenants/acme/deletions",
    "/api/tenants/acme/deletions/nightly-1",
    "/api/tenants/acme/windows/2026-10-01/learners",
    "/api/tenants/acme/learners",
    "/api/tenants/acme/windows/2026-10-01/groups",
    "/api/tenants/acme/forecast",
    "/api/tenants/acme/advisor",
]


@pytest.fixture(autouse=True)
def catching_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Views:
    isolated = isolate(monkeypatch, tmp_path)
    isolated.model.caught_up.clear()  # a worker that started a moment ago
    return isolated


@pytest.mark.parametrize("path", MODEL_READS)
def test_every_read_of_the_model_is_a_503_with_retry_after(server: Server, path: str) -> None:
    answer = server.call("GET", path, headers=bearer(READ_ALL))
    assert answer.status == 503, (path, answer.status, answer.text)
    assert answer.headers["Retry-After"] == str(api.CATCHING_UP_RETRY_S)
    assert "still reading the count topics" in answer.json()["error"]


def test_a_tenant_the_model_has_not_read_yet_is_not_called_missing(server: Server) -> None:
    # globex's counts may simply not be read yet: no 404 that a client could take for "gone"
    answer = server.call("GET", "/api/tenants/nobody-yet", headers=bearer(READ_ALL))
    assert answer.status == 503, answer.text


def test_the_caller_is_known_first(server: Server) -> None:
    assert server.call("GET", "/api/tenants/acme").status == 401
    # a tenant outside the token answers as before: 404, whatever the read model knows
    answer = server.call("GET", "/api/tenants/globex", headers=bearer(READ_ACME))
    assert answer.status == 404, answer.text


def test_a_deletion_is_not_sent_while_the_guard_rails_cannot_be_checked(
    server: Server, submitted: list[dict[str, Any]]
) -> None:
    answer = server.call(
        "POST",
        "/api/tenants/acme/deletions",
        headers={**bearer(ADMIN_ACME), "Content-Type": "application/json"},
        data=json.dumps({"mode": "preview", "learner_ids": ["l1"], "request_id": "nightly-1"}),
    )
    assert answer.status == 503, answer.text
    assert submitted == []


def test_the_dashboard_shows_what_it_has_in_red(server: Server) -> None:
    for path in ("/", "/tenants/acme"):
        answer = server.call("GET", path, headers=bearer(READ_ACME))
        assert answer.status == 200, (path, answer.text)
        assert dashboard.CATCHING_UP in answer.text, path
    # the download is a file a person may bill by: not from a partial model
    answer = server.call("GET", "/tenants/acme/learners.csv", headers=bearer(READ_ACME))
    assert answer.status == 503, answer.text


def test_the_openapi_document_needs_no_counts(server: Server) -> None:
    answer = server.call("GET", "/api/openapi.json", headers=bearer(READ_ACME))
    assert answer.status == 200, answer.text
    catching_up = answer.json()["paths"]["/api/tenants/{tenant_id}"]["get"]["responses"]["503"]
    assert "Retry-After" in catching_up["description"]


def test_once_caught_up_the_counts_are_answered(server: Server, catching_up: Views) -> None:
    # acme's window of today (`make dates` runs this on other days too), counted
    window = window_of(cut_for(LICENSE), datetime.now(UTC))
    start, end = window.start.isoformat(), window.end.isoformat()
    catching_up.model.apply_count(f"acme/{start}".encode(), count("acme", start, end, 461, 900))
    catching_up.model.caught_up.set()
    answer = server.call("GET", "/api/tenants/acme", headers=bearer(READ_ACME))
    assert answer.status == 200, answer.text
    assert answer.json()["active_learners"] == 461
    listed = server.call("GET", "/api/tenants", headers=bearer(READ_ALL)).json()
    assert {t["tenant_id"] for t in listed["tenants"]} == {"acme", "globex"}
