"""The read side (API answers, dashboard) under attack, against CONTRACT.md (no broker).

Found by a review of what administrators and dashboards are shown (2026-12): the read model
took a license from a record whose key is not its tenant_id, which the service dead-letters (the
dashboard then showed a limit, a zone and windows that count nothing); `?limit=` of more than
4,300 digits answered 500; the dashboard showed "100.0 %" (in red) for a tenant still below its
limit; threshold events were shown in UTC without saying so, and a dashboard deletion "before
2026-11-01" of a Tokyo tenant was listed in the audit trail as 2026-10-31; a tenant whose id
begins or ends with a space could never confirm a deletion on the dashboard. The last two go
through the served app, so they are in tests/unit/test_web_guards.py (one test server a session:
aiohttp binds the app to the first event loop that serves it).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from streams.http import api, dashboard
from streams.http.read_model import ReadModel
from tests.unit.test_api import LICENSE, NOW, count

# -- the read model: only what the service itself takes --------------------------------------------


def test_a_license_under_another_tenants_key_changes_nothing_shown() -> None:
    """The service dead-letters a license whose record key is not its tenant_id (the topic is
    compacted by key: such a record would come back on every replay). The read model must not
    take it either, or the dashboard shows a license that governs nothing."""
    model = ReadModel()
    model.apply_license(b"acme", json.dumps(LICENSE).encode())
    model.apply_count(b"acme/2026-10-01", count("acme", "2026-10-01", "2027-01-01", 452, 842))
    stray = {**LICENSE, "window_months": 1, "learner_limit": 5, "timezone": "Pacific/Kiritimati"}
    model.apply_license(b"globex", json.dumps(stray).encode())

    details = api.tenant_details(model, "acme", NOW)

    assert details["license"]["learner_limit"] == 500
    assert details["window"] == {"start": "2026-10-01", "end": "2027-01-01", "months": 3}
    assert details["active_learners"] == 452
    assert model.license_of("globex") is None


def test_a_license_under_another_key_makes_no_tenant_appear() -> None:
    model = ReadModel()
    model.apply_license(b"ghost", json.dumps({**LICENSE, "tenant_id": "phantom"}).encode())
    assert model.tenants() == []


def test_a_license_without_a_key_is_taken_as_the_service_takes_it() -> None:
    model = ReadModel()
    model.apply_license(None, json.dumps(LICENSE).encode())
    assert model.license_of("acme") is not None


# -- query parameters: a 4xx with one line, never a 500 --------------------------------------------


def test_a_limit_of_thousands_of_digits_is_a_400() -> None:
    """Python refuses to read an int of more than 4,300 digits (ValueError): that was a 500."""
    with pytest.raises(api.ApiError) as info:
        api.deletions(ReadModel(), "acme", "1" + "0" * 5_000)
    assert info.value.status == 400 and "\n" not in info.value.message


# -- percentages against limits and thresholds -----------------------------------------------------


def details_at(active: int, limit: int, timezone: str = "UTC") -> dict[str, Any]:
    model = ReadModel()
    license_ = {**LICENSE, "learner_limit": limit, "timezone": timezone}
    model.apply_license(b"acme", json.dumps(license_).encode())
    model.apply_count(b"acme/2026-10-01", count("acme", "2026-10-01", "2027-01-01", active, 842))
    return api.tenant_details(model, "acme", NOW)


@pytest.mark.parametrize(("active", "limit"), [(9_999, 10_000), (99_999, 100_000)])
def test_a_tenant_below_its_limit_is_never_shown_at_100_percent(active: int, limit: int) -> None:
    """99.99 % printed with one decimal is "100.0 %", in the limit's red, beside the 100 %
    threshold marked not reached."""
    details = details_at(active, limit)
    assert not details["thresholds"][-1]["reached"]
    page = dashboard.tenant_page(details, [], [], [], "csrf-1", who="ops")
    assert "100.0 %" not in page and "99.9 %" in page
    assert "#c62828" not in page.split("Utilization</div>", 1)[1].split("</div>", 1)[0]
    summary = {**details, "learner_limit": limit, "window": details["window"]}
    overview = dashboard.tenants_page([summary], "csrf-1")
    assert "100.0 %" not in overview and "99.9 %" in overview


def test_a_tenant_at_its_limit_is_shown_at_100_percent() -> None:
    details = details_at(10_000, 10_000)
    page = dashboard.tenant_page(details, [], [], [], "csrf-1", who="ops")
    assert "100.0 %" in page


# -- instants and dates in the tenant's zone -------------------------------------------------------


def event(occurred_at: str) -> dict[str, Any]:
    return {
        "event_id": "e1",
        "tenant_id": "acme",
        "window": {"start": "2026-10-01", "end": "2027-01-01", "months": 3},
        "threshold_pct": 80,
        "threshold_learners": 400,
        "direction": "up",
        "active_learners": 400,
        "learner_limit": 500,
        "notify": [],
        "occurred_at": occurred_at,
    }


def test_threshold_events_say_the_zone_of_their_time() -> None:
    """Every other instant on the page says "UTC"; an event's time did not, so an administrator
    in Tokyo read 23:30 UTC as 23:30 of their own day."""
    details = details_at(400, 500, "Asia/Tokyo")
    page = dashboard.tenant_page(
        details, [], [event("2026-11-19T23:30:00+00:00")], [], "csrf-1", who="ops"
    )
    assert "2026-11-19 23:30:00 UTC" in page


def older_than_receipt(cutoff: str) -> dict[str, Any]:
    return {
        "request_id": "r1",
        "tenant_id": "acme",
        "mode": "preview",
        "selector": {"kind": "older_than", "values": [cutoff]},
        "requested_at": "2026-11-20T10:00:00+00:00",
        "requested_by": "admin-acme",
        "reason": None,
        "attempts_affected": 3,
        "learners_affected": 2,
        "windows": [],
        "completed_at": "2026-11-20T10:00:01+00:00",
        "error": None,
    }


def test_the_audit_trail_shows_a_dashboard_date_as_the_tenant_typed_it() -> None:
    """ "Launched before 2026-11-01" typed for a Tokyo tenant is 2026-10-31T15:00Z; the audit
    trail listed it as 2026-10-31, a day before the date the administrator chose."""
    cutoff = api.local_date_cutoff("2026-11-01", "Asia/Tokyo")
    details = details_at(400, 500, "Asia/Tokyo")
    page = dashboard.tenant_page(details, [], [], [older_than_receipt(cutoff)], "csrf", "ops")
    audit = page.split('id="audit"', 1)[1]
    assert "older_than: 2026-11-01 00:00:00 +09:00" in audit
    assert "2026-10-31" not in audit
