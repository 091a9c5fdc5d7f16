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


class LearnerGroups(InputModel):
    """The teams and learning roles a learner belongs to now (a new record replaces the old).

    Groups never change counts; they let an administrator delete the attempts of whole teams or
    learning roles. A tombstone (null value) on the learner's key removes them.
    """

    tenant_id: EntityId
    learner_id: EntityId
    # as many as the contract allows (it sets no number): the worker dead-letters only a learner
    # whose teams and roles cannot be stored in one value (streams/stages/ingest.py)
    teams: tuple[GroupId, ...] = Field(default=(), description="team ids")
    roles: tuple[GroupId, ...] = Field(default=(), description="learning role ids")
