"""`attempt-deletions` (commands) and `deletion-receipts` (one per request)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from schemas.common import EntityId, InputModel, OutputModel, RequestId, Timestamp
from schemas.groups import GroupId

DeletionMode = Literal["physical", "logical", "preview"]
SELECTORS = ("attempts", "learner_ids", "older_than", "teams", "roles")


class AttemptRef(InputModel):
    learner_id: EntityId
    attempt_id: EntityId


class DeletionRequest(InputModel):
    """An administrator asks to delete attempt records, selected in exactly one way."""

    request_id: RequestId
    tenant_id: EntityId
    mode: DeletionMode = Field(
        description="physical: gone for good, counts drop; logical: hidden, still counted; "
        "preview: what physical would do, nothing changes"
    )
    requested_at: Timestamp
    attempts: Annotated[tuple[AttemptRef, ...], Field(min_length=1)] | None = Field(
        default=None, description="these attempts"
    )
    learner_ids: Annotated[tuple[EntityId, ...], Field(min_length=1)] | None = Field(
        default=None, description="every attempt of these learners launched before requested_at"
    )
    older_than: Timestamp | None = Field(
        default=None, description="every attempt of the tenant launched before this instant"
    )
    teams: Annotated[tuple[GroupId, ...], Field(min_length=1)] | None = Field(
        default=None,
        description="every attempt, launched before requested_at, of the learners in any of "
        "these teams (learner-groups) when the request is applied",
    )
    roles: Annotated[tuple[GroupId, ...], Field(min_length=1)] | None = Field(
        default=None,
        description="the same for learning roles",
    )

    @model_validator(mode="after")
    def _exactly_one_selector(self) -> DeletionRequest:
        chosen = [name for name in SELECTORS if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise ValueError(
                "exactly one selector of attempts, learner_ids, older_than, teams, roles is "
                "required; "
                f"got {', '.join(chosen) if chosen else 'none'}"
            )
        return self


class ReceiptWindow(OutputModel):
    start: date
    active_before: int
    active_after: int


class DeletionReceipt(OutputModel):
    """What a deletion request did (or, for a preview, would do); `error` set if it was invalid."""

    request_id: str
    tenant_id: str
    mode: str
    attempts_affected: int
    learners_affected: int
    windows: tuple[ReceiptWindow, ...]
    completed_at: datetime
    error: str | None
