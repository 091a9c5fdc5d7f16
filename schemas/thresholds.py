"""`threshold-events`: key `tenant_id`; one per crossing, with a deterministic id."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from schemas.common import OutputModel, WindowRef


class ThresholdEvent(OutputModel):
    event_id: str = Field(description="deterministic: a redelivery repeats it")
    tenant_id: str
    window: WindowRef
    threshold_pct: int
    threshold_learners: int = Field(description="ceil(limit x pct / 100)")
    direction: Literal["up", "down"]
    active_learners: int
    learner_limit: int
    notify: tuple[str, ...]
    occurred_at: datetime
