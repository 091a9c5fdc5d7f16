"""The answers of the HTTP API, computed from the read model (pure: no I/O, `now` given).

The License Key details an administrator sees: the license, the current Active Window, Active and
Total Learners against the limit, each threshold and whether it is reached, and the surcharge of
the window length.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from schemas.deletions import DeletionRequest
from schemas.licenses import DEFAULT_THRESHOLDS
from streams.domain.dead_letters import summarize_validation_error
from streams.domain.decoding import deletion_rejection
from streams.domain.recount import cut_for
from streams.domain.selectors import Selector, id_lines, instant
from streams.domain.tenants import threshold_learners, utilization_pct
from streams.domain.windows import Window, local_midnight, window_of
from streams.http.access import Caller
from streams.http.read_model import ReadModel

# The Active Window surcharge of the license's window length, in percent.
SURCHARGE_PCT = {12: 0, 3: 25, 1: 50}


class ApiError(Exception):
    """A request the API answers with `{"error": ...}` and this status."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.fields = fields or {}  # more of the answer beside "error" (a 503's request_id)

    def answer(self) -> dict[str, Any]:
        return {**self.fields, "error": self.message}


def window_ref(window: Window) -> dict[str, Any]:
    return {
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
        "months": window.months,
    }


def current_record(
    model: ReadModel, tenant_id: str, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tenant's current window (as `window_ref` gives it) and its count record (zeros
    before its record exists)."""
    cut = cut_for(model.license_of(tenant_id))
    window = window_of(cut, now)
    record = model.count_record(tenant_id, window.start.isoformat())
    if record is not None:
        return window_ref(window), record
    # A license that re-cut the windows, while the learner partitions re-cut: the tenant stage
    # keeps the last exact records (publication_ready), so the count topic's current record is
    # still one of the old cut. It is the figure the topic holds, not a 0 no record says.
    today = now.astimezone(ZoneInfo(cut.timezone)).date().isoformat()
    published = model.record_of_day(tenant_id, today)
    if published is not None:
        return dict(published.get("window") or {}), published
    # a new window, its zero record not yet here: the latest total stands
    latest = model.latest_record(tenant_id)
    total = latest["total_learners"] if latest else 0
    return window_ref(window), {"active_learners": 0, "total_learners": total, "updated_at": None}


def tenant_summary(model: ReadModel, tenant_id: str, now: datetime) -> dict[str, Any]:
    license_ = model.license_of(tenant_id)
    limit = license_.get("learner_limit") if license_ else None
    window, record = current_record(model, tenant_id, now)
    return {
        "tenant_id": tenant_id,
        "licensed": license_ is not None,
        "window": window,
        "active_learners": record["active_learners"],
        "total_learners": record["total_learners"],
        "learner_limit": limit,
        "utilization_pct": utilization_pct(record["active_learners"], limit),
    }


# How long a client is asked to wait while the read model catches up (Retry-After).
CATCHING_UP_RETRY_S = 5


def tenants(
    model: ReadModel, now: datetime, caller: Caller, *, partial: bool = False
) -> dict[str, Any]:
    """The tenants this caller may see, with their current window. 503 while the read model
    catches up, unless `partial` (the dashboard, which says so in red)."""
    if not partial:
        require_caught_up(model)
    visible = caller.visible(model.tenants())
    return {"tenants": [tenant_summary(model, t, now) for t in visible]}


def require_tenant(
    model: ReadModel,
    tenant_id: str,
    caller: Caller,
    *,
    partial: bool = False,
    trail: bool = False,
) -> None:
    """ApiError(404) for a tenant that does not exist, and, in the same words, for one the
    caller's token does not cover: a token learns nothing of other tenants. Before that, 503
    while the read model catches up, unless `partial`. With `trail` (the deletion audit trail),
    a tenant with receipts exists too: one whose license was removed, or whose last attempt a
    deletion removed, has no count record any more, and its receipts stay readable."""
    if not caller.sees(tenant_id):
        raise _no_tenant(tenant_id)
    if not partial:
        require_caught_up(model)
    if trail and model.receipts_of(tenant_id, 1):
        return
    _exists(model, tenant_id)


def require_caught_up(model: ReadModel) -> None:
    """ApiError(503) until the read model has read the output topics up to where they ended
    when it started. Before that a tenant's count may be an old one, 0, or missing (and its
    receipts too): a client that bills by the answer must never get such a count with a 200."""
    if not model.caught_up.is_set():
        raise ApiError(
            503,
            "this worker is still reading the count topics after its start (GET /ready "
            f"answers 503 until it has): try again in {CATCHING_UP_RETRY_S} s",
            {"Retry-After": str(CATCHING_UP_RETRY_S)},
        )


def _exists(model: ReadModel, tenant_id: str) -> None:
    if tenant_id not in model.tenants():
        raise _no_tenant(tenant_id)


def _no_tenant(tenant_id: str) -> ApiError:
    return ApiError(404, f"no tenant {tenant_id!r}: it has no license and no attempts")


def tenant_details(model: ReadModel, tenant_id: str, now: datetime) -> dict[str, Any]:
    _exists(model, tenant_id)
    license_ = model.license_of(tenant_id)
    summary = tenant_summary(model, tenant_id, now)
    _, record = current_record(model, tenant_id, now)
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
    _exists(model, tenant_id)
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


_CALENDAR_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def calendar_date(text: str) -> date:
    """A date written `YYYY-MM-DD`, and only so (`date.fromisoformat` also reads `20261001` and
    `2026-W40-4`, which would name the same window under another URL); ValueError otherwise."""
    if not _CALENDAR_DATE.fullmatch(text):
        raise ValueError(f"not YYYY-MM-DD: {text[:40]!r}")
    return date.fromisoformat(text)


def local_date_cutoff(text: str, timezone: str) -> str:
    """ "Launched before <date>", typed in the dashboard: local midnight of that date in the
    tenant's time zone (a Tokyo tenant's 2026-11-01 is 2026-10-31T15:00Z), as an instant."""
    try:
        day = calendar_date(text)
        return local_midnight(day, timezone).isoformat()
    except (ValueError, OverflowError):
        raise ApiError(400, f"not a date (YYYY-MM-DD) a deletion can use: {text[:40]!r}") from None


def form_selector(model: ReadModel, tenant_id: str, form: dict[str, str]) -> Selector:
    """The deletion selector of the dashboard's form: a local date, learner ids, teams or
    learning roles (one a line); exactly one of them."""
    day = form.get("older_than", "").strip()
    given = {kind: id_lines(form.get(kind, "")) for kind in ("learner_ids", "teams", "roles")}
    chosen = [kind for kind, ids in given.items() if ids] + (["older_than"] if day else [])
    if len(chosen) != 1:
        raise ApiError(400, "give exactly one of: a date, learner ids, teams, roles")
    if day:
        license_ = model.license_of(tenant_id) or {}
        cutoff = local_date_cutoff(day, str(license_.get("timezone") or "UTC"))
        return Selector.of("older_than", [cutoff])
    return Selector.of(chosen[0], given[chosen[0]])


def deletion_request(tenant_id: str, body: Any, now: datetime, requested_by: str) -> dict[str, Any]:
    """A full `attempt-deletions` request from a POST body, signed by the caller's name;
    ApiError(400) when it is not one. The guard-rail fields (`preview_request_id`, `force`)
    are the API's, not the request's."""
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object (an attempt-deletions request)")
    if "tenant_id" in body and body["tenant_id"] != tenant_id:
        raise ApiError(400, "tenant_id in the body differs from the tenant of the path")
    if not isinstance(body.get("force", False), bool):
        raise ApiError(400, "force must be true or false")
    request_fields = {k: v for k, v in body.items() if k not in GUARD_FIELDS}
    record = {
        "request_id": f"api-{uuid.uuid4().hex}",
        "requested_at": now.isoformat(),
        **request_fields,
        "tenant_id": tenant_id,
        "requested_by": requested_by,
    }
    try:
        request = DeletionRequest.model_validate(record)
    except ValidationError as exc:
        raise ApiError(400, summarize_validation_error(exc)) from None
    rejected = deletion_rejection(request, now)
    if rejected is not None:
        raise ApiError(400, rejected.detail)
    return request.model_dump(mode="json", exclude_none=True)


GUARD_FIELDS = ("preview_request_id", "force")
PREVIEW_MAX_AGE = timedelta(minutes=15)


def earlier_delivery(
    model: ReadModel, record: dict[str, Any], requested_at_given: bool
) -> dict[str, Any] | None:
    """The receipt of this very request, sent before (answer it again), or None for a new
    request id. ApiError(409) when the tenant used the request id for another request. A
    client that repeats a request without `requested_at` gets a new one each time, so then
    mode and selector decide alone."""
    receipt = model.receipt(record["tenant_id"], record["request_id"])
    if receipt is None:
        return None
    if not same_request(receipt, record, requested_at_given):
        raise ApiError(
            409, f"request_id {record['request_id']!r} was already used for another request"
        )
    return receipt


def same_request(receipt: dict[str, Any], record: dict[str, Any], requested_at_given: bool) -> bool:
    """Whether the receipt of a request id's owner is `record`'s (see earlier_delivery)."""
    return (
        receipt["mode"] == record["mode"]
        and receipt.get("selector") is not None
        and Selector.from_json(receipt["selector"]) == Selector.of_fields(record)
        and (
            not requested_at_given
            or (
                receipt.get("requested_at") is not None
                and instant(receipt["requested_at"]) == instant(record["requested_at"])
            )
        )
    )


def removed_share(receipt: dict[str, Any]) -> tuple[float, str | None]:
    """The largest share (%) of a window's active learners a receipt removes, and that window."""
    largest: tuple[float, str | None] = (0.0, None)
    for window in receipt.get("windows") or ():
        before, after = window["active_before"], window["active_after"]
        if before > 0:
            largest = max(largest, ((before - after) * 100.0 / before, window["start"]))
    return largest


def check_preview(
    model: ReadModel,
    record: dict[str, Any],
    body: dict[str, Any],
    now: datetime,
    max_share: int,
) -> None:
    """The guard rails of a physical deletion through the API (ApiError(409) when one fails):
    a preview of the same selector, at most 15 minutes old, and `"force": true` when that
    preview removes more than `max_share` % of a window's active learners."""
    if record["mode"] != "physical":
        return
    preview_id = body.get("preview_request_id")
    if not isinstance(preview_id, str) or not preview_id:
        raise ApiError(
            409,
            "a physical deletion needs preview_request_id: the request_id of a preview of the "
            "same selector, at most 15 minutes old",
        )
    preview = model.receipt(record["tenant_id"], preview_id)
    if preview is None or preview["mode"] != "preview" or preview.get("error"):
        raise ApiError(409, f"{preview_id!r} is not a preview receipt of this tenant")
    if Selector.from_json(preview["selector"]) != Selector.of_fields(record):
        raise ApiError(409, f"preview {preview_id!r} selected other attempts: preview this request")
    age = now - instant(preview["completed_at"])
    if age > PREVIEW_MAX_AGE:
        raise ApiError(
            409,
            f"preview {preview_id!r} is {age.total_seconds() / 60:.0f} minutes old; "
            "preview again (at most 15 minutes)",
        )
    # Every selector but older_than takes the attempts launched before requested_at, which the
    # client chooses: a preview backdated to 1990 removes nothing and would waive "force" for a
    # deletion that removes everything now. So the preview must be of about the same moment.
    if instant(record["requested_at"]) - instant(preview["requested_at"]) > PREVIEW_MAX_AGE:
        raise ApiError(
            409,
            f"preview {preview_id!r} was requested at {preview['requested_at']}, more than 15 "
            "minutes before this deletion: preview again",
        )
    share, window = removed_share(preview)
    if share > max_share and body.get("force") is not True:
        raise ApiError(
            409,
            f"this deletion removes {share:.0f} % of window {window}'s active learners (more "
            f'than DELETION_MAX_SHARE={max_share} %): send "force": true to confirm',
        )


def deletions(model: ReadModel, tenant_id: str, limit_text: str | None) -> dict[str, Any]:
    """The tenant's deletion audit trail: its receipts, newest first."""
    limit = 100
    if limit_text is not None:
        # its length first: Python refuses to read an int of more than 4,300 digits
        digits = limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 9
        if not digits or not 1 <= int(limit_text) <= MAX_RECEIPTS_LISTED:
            raise ApiError(400, f"limit must be a whole number 1-{MAX_RECEIPTS_LISTED:,}")
        limit = int(limit_text)
    return {"tenant_id": tenant_id, "deletions": model.receipts_of(tenant_id, limit)}


MAX_RECEIPTS_LISTED = 10_000


def receipt_matcher(record: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """Whether a receipt answers this very request (not another one sent under its id).

    The request is what the stages' fingerprint says: mode, selector and `requested_at`. Who
    sent it is not part of it: the same request from a second administrator is a redelivery,
    answered with the receipt that names the first one."""
    selector = Selector.of_fields(record)
    requested_at = instant(record["requested_at"])

    def answers(receipt: dict[str, Any]) -> bool:
        return (
            receipt["mode"] == record["mode"]
            and receipt.get("selector") is not None
            and Selector.from_json(receipt["selector"]) == selector
            and receipt.get("requested_at") is not None
            and instant(receipt["requested_at"]) == requested_at
        )

    return answers
