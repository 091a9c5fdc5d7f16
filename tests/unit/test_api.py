"""The HTTP API's answers, the dashboard's HTML and the tokens, from a read model (no broker)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from streams.http import api, dashboard
from streams.http.access import OPEN
from streams.http.openapi import document
from streams.http.read_model import ReadModel

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
LICENSE = {
    "tenant_id": "acme",
    "cycle_start": "2026-01-01",
    "window_months": 3,
    "learner_limit": 500,
    "thresholds": [80, 90, 100],
    "notify": ["admin@acme.example"],
    "timezone": "UTC",
}


def count(tenant: str, start: str, end: str, active: int, total: int, months: int = 3) -> bytes:
    return json.dumps(
        {
            "tenant_id": tenant,
            "window": {"start": start, "end": end, "months": months},
            "active_learners": active,
            "total_learners": total,
            "learner_limit": 500 if tenant == "acme" else None,
            "utilization_pct": None,
            "licensed": tenant == "acme",
            "updated_at": "2026-11-20T11:59:00+00:00",
        }
    ).encode()


@pytest.fixture
def model() -> ReadModel:
    model = ReadModel()
    model.apply_license(b"acme", json.dumps(LICENSE).encode())
    model.apply_count(b"acme/2026-07-01", count("acme", "2026-07-01", "2026-10-01", 380, 700))
    model.apply_count(b"acme/2026-10-01", count("acme", "2026-10-01", "2027-01-01", 452, 842))
    model.apply_count(
        b"globex/2026-01-01", count("globex", "2026-01-01", "2027-01-01", 12, 30, months=12)
    )
    model.caught_up.set()  # as a worker's once it has read the output topics
    return model


def test_license_key_details(model: ReadModel) -> None:
    details = api.tenant_details(model, "acme", NOW)
    assert details["license"]["surcharge_pct"] == 25
    assert details["window"] == {"start": "2026-10-01", "end": "2027-01-01", "months": 3}
    assert (details["active_learners"], details["total_learners"]) == (452, 842)
    assert details["utilization_pct"] == 90.4
    assert details["thresholds"] == [
        {"pct": 80, "learners": 400, "reached": True},
        {"pct": 90, "learners": 450, "reached": True},
        {"pct": 100, "learners": 500, "reached": False},
    ]
    unlicensed = api.tenant_details(model, "globex", NOW)
    assert unlicensed["licensed"] is False and unlicensed["license"]["surcharge_pct"] == 0
    assert unlicensed["thresholds"] == [] and unlicensed["utilization_pct"] is None
    with pytest.raises(api.ApiError) as info:
        api.tenant_details(model, "nobody", NOW)
    assert info.value.status == 404


def test_a_new_window_before_its_first_record(model: ReadModel) -> None:
    january = datetime(2027, 1, 2, tzinfo=UTC)
    summary = api.tenant_summary(model, "acme", january)
    assert summary["window"]["start"] == "2027-01-01"
    assert (summary["active_learners"], summary["total_learners"]) == (0, 842)


def test_tenants_and_windows(model: ReadModel) -> None:
    listed = api.tenants(model, NOW, OPEN)["tenants"]
    assert [t["tenant_id"] for t in listed] == ["acme", "globex"]
    windows = api.tenant_windows(model, "acme")["windows"]
    assert [w["window"]["start"] for w in windows] == ["2026-07-01", "2026-10-01"]
    model.apply_count(b"acme/2026-07-01", None)  # a re-cut tombstoned it
    assert len(api.tenant_windows(model, "acme")["windows"]) == 1


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([], "JSON object"),
        ({"mode": "shred", "older_than": "2026-01-01T00:00:00Z"}, "mode"),
        ({"mode": "physical"}, "exactly one selector"),
        ({"mode": "physical", "older_than": "2027-06-01T00:00:00Z"}, "future"),
        ({"mode": "preview", "teams": ["a"], "roles": ["b"]}, "exactly one selector"),
        ({"mode": "preview", "tenant_id": "globex", "older_than": "2026-01-01T00:00:00Z"}, "path"),
    ],
)
def test_bad_deletion_bodies_are_400(body: object, words: str) -> None:
    with pytest.raises(api.ApiError) as info:
        api.deletion_request("acme", body, NOW, "ops")
    assert info.value.status == 400 and words in info.value.message
    assert "\n" not in info.value.message


def test_a_deletion_body_gets_an_id_and_a_time() -> None:
    body = {"mode": "preview", "learner_ids": ["l1"], "requested_by": "mallory"}
    record = api.deletion_request("acme", body, NOW, "ops")
    assert record["tenant_id"] == "acme" and record["request_id"].startswith("api-")
    assert record["requested_by"] == "ops", "the token's name, whatever the body says"
    assert datetime.fromisoformat(record["requested_at"]) == NOW


def test_receipts_are_kept_once() -> None:
    model = ReadModel()
    receipt = {"request_id": "r1", "tenant_id": "acme", "mode": "preview", "completed_at": "a"}
    model.apply_receipt(json.dumps(receipt).encode())
    model.apply_receipt(json.dumps({**receipt, "completed_at": "b"}).encode())
    assert model.receipt("acme", "r1")["completed_at"] == "a"  # type: ignore[index]
    assert model.receipt("globex", "r1") is None


def test_the_dashboard_sorts_by_utilization_and_draws_the_chart(model: ReadModel) -> None:
    html = dashboard.tenants_page(api.tenants(model, NOW, OPEN)["tenants"], "csrf-1")
    assert html.index(">acme<") < html.index(">globex<"), "the utilized tenant first"
    details = api.tenant_details(model, "acme", NOW)
    windows = api.tenant_windows(model, "acme")["windows"]
    page = dashboard.tenant_page(details, windows, [], [], "csrf-1", who="ops")
    assert page.count('class="bar"') == 2 and ">limit<" in page and "90%" in page
    receipt = {
        "mode": "preview",
        "request_id": "r1",
        "attempts_affected": 1204,
        "learners_affected": 311,
        "windows": [{"start": "2026-10-01", "active_before": 842, "active_after": 655}],
    }
    assert "window 2026-10-01: 842 &rarr; 655" in dashboard.receipt_html(receipt)
    assert "<script" not in dashboard.tenant_page(
        {**details, "tenant_id": "<script>x</script>"}, windows, [], [], "csrf-1", "ops"
    )
    assert 'name="csrf" value="csrf-1"' in page, "every form carries the CSRF token"


def test_the_openapi_document_names_every_call() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/api/tenants",
        "/api/tenants/{tenant_id}",
        "/api/tenants/{tenant_id}/windows",
        "/api/tenants/{tenant_id}/deletions",
        "/api/tenants/{tenant_id}/deletions/{request_id}",
        "/api/tenants/{tenant_id}/windows/{start}/learners",
        "/api/tenants/{tenant_id}/learners",
        "/api/tenants/{tenant_id}/windows/{start}/groups",
        "/api/tenants/{tenant_id}/forecast",
        "/api/tenants/{tenant_id}/advisor",
        "/api/openapi.json",
    }
    json.dumps(doc)


def test_instants_are_shown_to_the_second_with_their_zone() -> None:
    when = dashboard.when
    assert when("2026-11-29T04:41:50.552855+00:00") == "2026-11-29 04:41:50 UTC"
    assert when("2026-11-29T04:41:50Z") == "2026-11-29 04:41:50 UTC"
    assert when("2026-11-29T13:41:50+09:00") == "2026-11-29 13:41:50 +09:00"
    assert when(None) == "\u2013"


def test_the_dashboard_says_when_a_restarted_worker_may_still_miss_figures() -> None:
    """Until the read model has read the output topics to where they ended at the start, a
    tenant shows 0 (or is missing): the pages say so instead of showing it as the count."""
    model = ReadModel()
    model.apply_license(b"acme", json.dumps(LICENSE).encode())
    with pytest.raises(api.ApiError) as refused:  # the API answers no such figure: a 503
        api.tenants(model, NOW, OPEN)
    assert refused.value.status == 503
    summaries = api.tenants(model, NOW, OPEN, partial=True)["tenants"]
    details = api.tenant_details(model, "acme", NOW)
    warning = "still reading the count topics"
    assert warning in dashboard.tenants_page(summaries, "c", catching_up=True)
    assert warning not in dashboard.tenants_page(summaries, "c")
    assert warning in dashboard.tenant_page(details, [], [], [], "c", catching_up=True)
    assert warning not in dashboard.tenant_page(details, [], [], [], "c")


def test_a_tenant_gone_from_the_count_topic_keeps_its_audit_trail() -> None:
    """helper-51: a tenant whose license was removed (or whose last attempt a deletion removed)
    has no count record any more and answers 404 as "no license and no attempts"; its deletion
    receipts stay readable (the audit trail)."""
    model = ReadModel()
    model.apply_license(b"acme", json.dumps(LICENSE).encode())
    model.apply_count(b"acme/2026-10-01", count("acme", "2026-10-01", "2027-01-01", 0, 0))
    receipt = {"request_id": "r1", "tenant_id": "acme", "mode": "physical", "completed_at": "a"}
    model.apply_receipt(json.dumps(receipt).encode())
    model.apply_license(b"acme", None)
    model.apply_count(b"acme/2026-10-01", None)
    model.caught_up.set()
    with pytest.raises(api.ApiError) as raised:
        api.require_tenant(model, "acme", OPEN)
    assert raised.value.status == 404
    api.require_tenant(model, "acme", OPEN, trail=True)
    assert [r["request_id"] for r in api.deletions(model, "acme", None)["deletions"]] == ["r1"]
    with pytest.raises(api.ApiError):
        api.require_tenant(model, "globex", OPEN, trail=True)  # no receipts: no tenant


def test_the_advisor_table_marks_the_smallest_deletion_or_says_none_is_needed() -> None:
    options = [
        {
            "older_than": "2026-01-01T00:00:00+00:00",
            "active_learners_after": 30,
            "attempts_removed": 5,
        },
        {
            "older_than": "2026-02-01T00:00:00+00:00",
            "active_learners_after": 15,
            "attempts_removed": 9,
        },
    ]
    over = {"options": options, "active_learners": 30, "learner_limit": 20}
    over["smallest_under_limit"] = "2026-02-01T00:00:00+00:00"
    table = dashboard.advisor_table(over, "UTC")
    assert table.count(dashboard.BEST) == 1 and dashboard.UNDER_THE_LIMIT not in table
    under = {"options": options, "active_learners": 13, "learner_limit": 20}
    under["smallest_under_limit"] = None
    table = dashboard.advisor_table(under, "UTC")
    assert dashboard.BEST not in table and dashboard.UNDER_THE_LIMIT in table
