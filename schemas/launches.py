"""`launches`: one record per launch of a Learning Element."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from schemas.common import EntityId, InputModel, RequestId, Timestamp

Tracking = Literal["tracked", "none", "none_resource"]
LaunchedBy = Literal["learner", "admin"]


class Launch(InputModel):
    """A learner (or an admin, from LMS Admin > Catalog) opened a Learning Element."""

    event_id: RequestId = Field(description="unique per launch")
    tenant_id: EntityId
    learner_id: EntityId
    element_id: EntityId
    attempt_id: EntityId = Field(description="the attempt record the launch creates or resumes")
    launched_at: Timestamp
    content_type: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="'scorm', or another kind such as 'video' or 'document'"
    )
    tracking: Tracking = Field(
        default="tracked", description="the element's Utilization Tracking setting"
    )
    launched_by: LaunchedBy = Field(
        default="learner", description="'admin' = launched from LMS Admin > Catalog"
    )
