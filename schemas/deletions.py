"""`attempt-deletions` (commands) and `deletion-receipts` (one per request)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

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
    requested_by: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None,
        description="who asked: the HTTP API sets the token's name, the CLI `cli:<user>`",
    )
    reason: Annotated[str, StringConstraints(max_length=1000)] | None = Field(
        default=None, description="why, in the administrator's words"
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


class SelectorEcho(OutputModel):
    """The request's selector: what it named."""

    kind: str = Field(description="attempts, learner_ids, older_than, teams or roles")
    values: tuple[Any, ...] = Field(
        description="attempts: {learner_id, attempt_id} objects; older_than: one timestamp; "
        "the others: ids"
    )


class DeletionReceipt(OutputModel):
    """What a deletion request did (or, for a preview, would do); `error` set if it was invalid.

    The receipts are the tenant's deletion audit trail: who asked, why, what was named."""

    request_id: str
    tenant_id: str
    mode: str
    selector: SelectorEcho | None = Field(description="null for a request without a usable one")
    requested_at: datetime | None
    requested_by: str | None
    reason: str | None
    attempts_affected: int
    learners_affected: int
    windows: tuple[ReceiptWindow, ...]
    completed_at: datetime
    error: str | None
