"""`active-learner-counts`: compacted, key `{tenant_id}/{window start date}`."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from schemas.common import OutputModel, WindowRef


class CountRecord(OutputModel):
    """The Active and Total Learners of one tenant window, as an administrator sees them."""

    tenant_id: str
    window: WindowRef
    active_learners: int = Field(description="unique learners with attempts in this window")
    total_learners: int = Field(description="unique learners with any attempt not deleted")
    learner_limit: int | None
    utilization_pct: float | None = Field(
        description="active / limit x 100, cut to two decimals; null without limit"
    )
    licensed: bool = Field(description="false: the tenant has no license; defaults apply")
    updated_at: datetime
