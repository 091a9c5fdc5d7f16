"""The answers of the HTTP API, computed from the read model (pure: no I/O, `now` given).

The License Key details an administrator sees: the license, the current Active Window, Active and
Total Learners against the limit, each threshold and whether it is reached, and the surcharge of
the window length.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError

from schemas.deletions import DeletionRequest
from schemas.licenses import DEFAULT_THRESHOLDS
from streams.domain.dead_letters import summarize_validation_error
from streams.domain.decoding import deletion_rejection
from streams.domain.recount import cut_for
from streams.domain.selectors import Selector
from streams.domain.tenants import threshold_learners, utilization_pct
from streams.domain.windows import Window, local_midnight, window_of
from streams.http.read_model import ReadModel

# The Active Window surcharge of the license's window length, in percent.
SURCHARGE_PCT = {12: 0, 3: 25, 1: 50}


class ApiError(Exception):
    """A request the API answers with `{"error": ...}` and this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def window_ref(window: Window) -> dict[str, Any]:
    return {
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
        "months": window.months,
    }


def _current(model: ReadModel, tenant_id: str, now: datetime) -> tuple[Window, dict[str, Any]]:
    """The tenant's current window and its count record (zeros before its record exists)."""
    window = window_of(cut_for(model.license_of(tenant_id)), now)
    record = model.counts.get(tenant_id, {}).get(window.start.isoformat())
    if record is None:  # a new window, its zero record not yet here: the latest total stands
        windows = model.windows_of(tenant_id)
        total = windows[-1]["total_learners"] if windows else 0
        record = {"active_learners": 0, "total_learners": total, "updated_at": None}
    return window, record


def tenant_summary(model: ReadModel, tenant_id: str, now: datetime) -> dict[str, Any]:
    license_ = model.license_of(tenant_id)
    limit = license_.get("learner_limit") if license_ else None
    window, record = _current(model, tenant_id, now)
    return {
        "tenant_id": tenant_id,
        "licensed": license_ is not None,
        "window": window_ref(window),
        "active_learners": record["active_learners"],
        "total_learners": record["total_learners"],
        "learner_limit": limit,
        "utilization_pct": utilization_pct(record["active_learners"], limit),
    }


def tenants(model: ReadModel, now: datetime) -> dict[str, Any]:
    return {"tenants": [tenant_summary(model, t, now) for t in model.tenants()]}


def tenant_details(model: ReadModel, tenant_id: str, now: datetime) -> dict[str, Any]:
    if tenant_id not in model.tenants():
        raise ApiError(404, f"no tenant {tenant_id!r}: it has no license and no attempts")
    license_ = model.license_of(tenant_id)
    summary = tenant_summary(model, tenant_id, now)
    _, record = _current(model, tenant_id, now)
    months = int(license_["window_months"]) if license_ else 12
    thresholds = list(license_.get("thresholds", DEFAULT_THRESHOLDS)) if license_ else []
    limit = summary["learner_limit"]
    return {
        "tenant_id": tenant_id,
        "licensed": summary["licensed"],
        "license": {
            "cycle_start": license_["cycle_start"] if license_ else "1970-01-01",
            "window_months": months,
            "learner_limit": limit,
            "thresholds": thresholds,
            "notify": list(license_.get("notify", ())) if license_ else [],
            "timezone": license_.get("timezone", "UTC") if license_ else "UTC",
            "surcharge_pct": SURCHARGE_PCT[months],
        },
        "window": summary["window"],
        "active_learners": summary["active_learners"],
        "total_learners": summary["total_learners"],
        "utilization_pct": summary["utilization_pct"],
        "thresholds": [
            {
                "pct": pct,
                "learners": threshold_learners(limit, pct),
                "reached": summary["active_learners"] >= threshold_learners(limit, pct),
            }
            for pct in thresholds
            if limit is not None
        ],
        "updated_at": record["updated_at"],
    }


def tenant_windows(model: ReadModel, tenant_id: str) -> dict[str, Any]:
    if tenant_id not in model.tenants():
        raise ApiError(404, f"no tenant {tenant_id!r}: it has no license and no attempts")
    return {
        "tenant_id": tenant_id,
        "windows": [
            {
                "window": record["window"],
                "active_learners": record["active_learners"],
                "total_learners": record["total_learners"],
                "updated_at": record["updated_at"],
            }
            for record in model.windows_of(tenant_id)
        ],
    }


def local_date_cutoff(text: str, timezone: str) -> str:
    """ "Launched before <date>", typed in the dashboard: local midnight of that date in the
    tenant's time zone (a Tokyo tenant's 2026-11-01 is 2026-10-31T15:00Z), as an instant."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"not a date (YYYY-MM-DD): {text[:40]!r}") from None
    return local_midnight(day, timezone).isoformat()


def form_selector(model: ReadModel, tenant_id: str, older_than: str, learner_ids: str) -> Selector:
    """The deletion selector of the dashboard's form: a local date, or learner ids."""
    day = older_than.strip()
    learners = [line.strip() for line in learner_ids.splitlines() if line.strip()]
    if day and learners:
        raise ApiError(400, "give a date or learner ids, not both")
    if day:
        license_ = model.license_of(tenant_id) or {}
        cutoff = local_date_cutoff(day, str(license_.get("timezone") or "UTC"))
        return Selector.of("older_than", [cutoff])
    if learners:
        return Selector.of("learner_ids", learners)
    raise ApiError(400, "give a date or learner ids")


def deletion_request(tenant_id: str, body: Any, now: datetime) -> dict[str, Any]:
    """A full `attempt-deletions` request from a POST body; ApiError(400) when it is not one."""
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object (an attempt-deletions request)")
    if "tenant_id" in body and body["tenant_id"] != tenant_id:
        raise ApiError(400, "tenant_id in the body differs from the tenant of the path")
    record = {
        "request_id": f"api-{uuid.uuid4().hex}",
        "requested_at": now.isoformat(),
        **body,
        "tenant_id": tenant_id,
    }
    try:
        request = DeletionRequest.model_validate(record)
    except ValidationError as exc:
        raise ApiError(400, summarize_validation_error(exc)) from None
    rejected = deletion_rejection(request, now)
    if rejected is not None:
        raise ApiError(400, rejected.detail)
    return request.model_dump(mode="json", exclude_none=True)
