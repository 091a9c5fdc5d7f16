"""`launches`: one record per launch of a Learning Element."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints

from schemas.common import EntityId, InputModel, Timestamp


def _normalized(value: Any) -> Any:
    # the contract compares content_type and tracking case-insensitively, trimmed
    return value.strip().lower() if isinstance(value, str) else value


Tracking = Annotated[Literal["tracked", "none", "none_resource"], BeforeValidator(_normalized)]
LaunchedBy = Literal["learner", "admin"]


class Launch(InputModel):
    """A learner (or an admin, from LMS Admin > Catalog) opened a Learning Element."""

    # no upper bound on event_id or content_type: the contract sets none, and neither is ever a
    # key (a launch refused for a long MIME type would be a learner missing from the count)
    event_id: Annotated[str, StringConstraints(min_length=1)] = Field(
        description="unique per launch"
    )
    tenant_id: EntityId
    learner_id: EntityId
    element_id: EntityId
    attempt_id: EntityId = Field(description="the attempt record the launch creates or resumes")
    launched_at: Timestamp
    content_type: Annotated[str, BeforeValidator(_normalized)] | None = Field(
        default=None, description="'scorm', or another kind such as 'video' or 'document'"
    )
    tracking: Tracking = Field(
        default="tracked", description="the element's Utilization Tracking setting"
    )
    launched_by: LaunchedBy = Field(
        default="learner", description="'admin' = launched from LMS Admin > Catalog"
    )
