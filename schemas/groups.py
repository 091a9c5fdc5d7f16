"""`learner-groups`: compacted, key `{tenant_id}/{learner_id}`; a learner's teams and roles."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from schemas.common import EntityId, InputModel

GroupId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256),
    Field(description="a team or learning role id of the LMS, 1 to 256 characters"),
]
MAX_GROUPS = 1_000


class LearnerGroups(InputModel):
    """The teams and learning roles a learner belongs to now (a new record replaces the old).

    Groups never change counts; they let an administrator delete the attempts of whole teams or
    learning roles. A tombstone (null value) on the learner's key removes them.
    """

    tenant_id: EntityId
    learner_id: EntityId
    teams: Annotated[tuple[GroupId, ...], Field(max_length=MAX_GROUPS)] = Field(
        default=(), description="team ids"
    )
    roles: Annotated[tuple[GroupId, ...], Field(max_length=MAX_GROUPS)] = Field(
        default=(), description="learning role ids"
    )
