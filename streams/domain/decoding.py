"""Turning raw input bytes into contract models, or into the reason they cannot be used."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from schemas.common import MAX_ID_LENGTH
from schemas.deletions import DeletionRequest
from streams.domain.dead_letters import summarize_validation_error
from streams.domain.selectors import Selector

FUTURE_TOLERANCE = timedelta(hours=1)
_NOT_IN_IDS = re.compile(r"[/\x00-\x1f\x7f]")  # what an entity id may not hold

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Rejected:
    reason: str  # "invalid" | "future" | "erased" | "conflict"
    detail: str


def decode(model: type[M], raw: bytes | None) -> M | Rejected:
    """Validate one record value against `model`; never raises for bad input."""
    if raw is None:
        return Rejected("invalid", "value is null (a tombstone), expected a JSON object")
    if not raw.strip():
        return Rejected("invalid", "value is empty, expected a JSON object")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected("invalid", f"value is not UTF-8 text ({exc.reason} at byte {exc.start})")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        kinds = {item["type"] for item in exc.errors(include_url=False, include_input=False)}
        if "json_invalid" in kinds:
            return Rejected("invalid", f"value is not JSON: {summarize_validation_error(exc)}")
        if "model_type" in kinds:
            return Rejected("invalid", "value is JSON but not an object")
        return Rejected("invalid", summarize_validation_error(exc))
    except Exception as exc:  # a validator that raised something else: still bad input
        return Rejected("invalid", f"value could not be read ({type(exc).__name__})")


def future_rejection(launched_at: datetime, now: datetime) -> Rejected | None:
    """Launches more than an hour ahead of the wall clock are dead-lettered as `future`."""
    if launched_at > now + FUTURE_TOLERANCE:
        return Rejected(
            "future",
            f"launched_at {launched_at.isoformat()} is more than 1 hour after {now.isoformat()}",
        )
    return None


def deletion_rejection(request: DeletionRequest, now: datetime) -> Rejected | None:
    """What makes a well-formed deletion request unusable, if anything."""
    limit = now + FUTURE_TOLERANCE
    if request.requested_at > limit:
        return Rejected(
            "invalid", f"requested_at {request.requested_at.isoformat()} is in the future"
        )
    if request.older_than is not None and request.older_than > limit:
        return Rejected("invalid", f"older_than {request.older_than.isoformat()} is in the future")
    too_large = Selector.of_request(request).too_large()
    if too_large is not None:
        return Rejected("invalid", too_large)
    return None


def valid_id(text: str) -> bool:
    """Whether `text` is an entity id of the contract (schemas.common.EntityId)."""
    return 0 < len(text) <= MAX_ID_LENGTH and _NOT_IN_IDS.search(text) is None


def usable_ids(raw: bytes | None) -> tuple[str, str, str] | None:
    """request_id, tenant_id and mode of an invalid request, if it has usable ones."""
    try:
        record = orjson.loads(raw) if raw else None
    except (ValueError, RecursionError):  # orjson refuses deep nesting too
        return None
    if not isinstance(record, dict):
        return None
    request_id, tenant_id, mode = (
        record.get("request_id"),
        record.get("tenant_id"),
        record.get("mode"),
    )
    if not (isinstance(request_id, str) and 1 <= len(request_id) <= 256):
        return None
    if not (isinstance(tenant_id, str) and valid_id(tenant_id)):
        return None  # a receipt under a tenant id the contract refuses would be no tenant's
    return request_id, tenant_id, mode[:32] if isinstance(mode, str) else "invalid"
