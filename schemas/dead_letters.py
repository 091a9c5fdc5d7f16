"""`dead-letters`: every input record the service could not use, with the reason."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from schemas.common import OutputModel

DeadLetterReason = Literal["invalid", "future", "erased", "conflict"]


class SourcePosition(OutputModel):
    topic: str
    partition: int
    offset: int


class DeadLetter(OutputModel):
    reason: DeadLetterReason
    detail: str = Field(description="what was wrong, in one line")
    raw: str | None = Field(description="the original value as text; base64 when not UTF-8")
    raw_encoding: Literal["base64"] | None = Field(
        default=None, description="'base64' when raw is not the UTF-8 text itself"
    )
    source: SourcePosition
    rejected_at: datetime
