"""Turning raw input bytes into contract models, or into the reason they cannot be used."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from streams.dead_letters import summarize_validation_error

FUTURE_TOLERANCE = timedelta(hours=1)

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


def future_rejection(launched_at: datetime, now: datetime) -> Rejected | None:
    """Launches more than an hour ahead of the wall clock are dead-lettered as `future`."""
    if launched_at > now + FUTURE_TOLERANCE:
        return Rejected(
            "future",
            f"launched_at {launched_at.isoformat()} is more than 1 hour after {now.isoformat()}",
        )
    return None
