"""The report endpoints over HTTP (the worker's real app in-process, tests/unit/web_harness.py)
with hostile paths and query parameters and odd ids: never a 5xx, and CSV/JSON that say exactly
what a recount says (review 2026-12-03)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas import topics
from tests.stages.pipeline import Pipeline, launch, license_
from tests.stages.test_report_views import wire
from tests.unit.web_harness import READ_ALL, Server, bearer, isolate

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
ODD = [
    '=HYPERLINK("x","y")',
    "+1",
    "-2",
    "@SUM(A1)",
    "a,b",
    'q"uote',
    "é",
    "x\u2028y",
    "x\u0085y",
    " =1+1",
    "\uff1d1+1",
    "user-1",
    "user",
    "'=already",
]


def acme_in_apia(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, learners: list[str]) -> Pipeline:
    """acme, billed monthly from the 31st in Apia (its current window 2026-02-28 to 2026-03-31),
    with one launch of each of `learners` in it, served over HTTP at NOW."""
    isolate(monkeypatch, tmp_path)
    p = Pipeline(partitions=3, start=NOW)
    p.produce(
        topics.LICENSES,
        license_(
            "acme",
            cycle_start="2026-01-31",
            window_months=1,
            timezone="Pacific/Apia",
            learner_limit=5,
        ),
    )
    for n, learner in enumerate(learners):
        p.produce(topics.LAUNCHES, launch("acme", learner, f"a{n}", "2026-03-05T10:00:00+13:00"))
    p.settle()
    wire(monkeypatch, p, NOW, http=True)
    return p


@pytest.fixture
def wired(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, server: Server) -> Pipeline:
    return acme_in_apia(monkeypatch, tmp_path, ODD)


HOSTILE = [
    "/api/tenants/acme/windows/2026-02-28/learners?format=csv&format=json",
    "/api/tenants/acme/windows/2026-02-28/learners?format=" + "x" * 100_00,
    "/api/tenants/acme/windows/9999-12-31/learners",
    "/api/tenants/acme/windows/0001-01-01/learners",
    "/api/tenants/acme/windows/0001-01-31/learners",
    "/api/tenants/acme/windows/9999-12-31/groups",
    "/api/tenants/acme/windows/0000-01-01/groups",
    "/api/tenants/acme/windows/2026-02-30/groups",
    "/api/tenants/acme/windows/%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96-03-01/groups",
    "/api/tenants/acme/windows/2026-02-28%00/learners",
    "/api/tenants/acme/learners?status=active&status=inactive",
    "/api/tenants/acme/learners?status=",
    "/api/tenants/acme/learners?format=jsonl&status=inactive",
    "/api/tenants/acme/deletions?limit=-1",
    "/api/tenants/acme/deletions?limit=99999999999999999999999",
    "/api/tenants/acme/deletions?limit=1e3",
    "/api/tenants/acme/forecast?x=1",
    "/api/tenants/acme/advisor",
    "/api/tenants/nobody/forecast",
    "/api/tenants/nobody/windows/2026-02-28/learners",
]


@pytest.mark.parametrize("path", HOSTILE)
def test_no_hostile_request_is_a_5xx(wired: Pipeline, server: Server, path: str) -> None:
    answer = server.call("GET", path, headers=bearer(READ_ALL))
    assert answer.status < 500, (answer.status, answer.text[:300])


def test_the_csv_lists_every_counted_learner_exactly_once_as_text(
    wired: Pipeline, server: Server
) -> None:
    answer = server.call(
        "GET", "/api/tenants/acme/windows/2026-02-28/learners?format=csv", headers=bearer(READ_ALL)
    )
    assert answer.status == 200, answer.text[:300]
    rows = list(csv.reader(io.StringIO(answer.body.decode("utf-8"), newline="")))
    assert rows[0] == [
        "learner_id",
        "first_attempt_at",
        "last_attempt_at",
        "attempts",
        "teams",
        "roles",
    ]
    assert len(rows) - 1 == wired.active("acme", "2026-02-28") == len(ODD)
    for row in rows[1:]:
        assert not row[0].startswith(("=", "+", "-", "@", "\t", "\r")), row
    as_json = server.call(
        "GET", "/api/tenants/acme/windows/2026-02-28/learners", headers=bearer(READ_ALL)
    ).json()
    assert [r["learner_id"] for r in as_json["learners"]] == sorted(ODD)
    jl = server.call(
        "GET",
        "/api/tenants/acme/windows/2026-02-28/learners?format=jsonl",
        headers=bearer(READ_ALL),
    )
    assert [json.loads(x)["learner_id"] for x in jl.body.split(b"\n") if x] == sorted(ODD)
