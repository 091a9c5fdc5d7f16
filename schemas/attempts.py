"""`attempts`: compacted, key `{tenant_id}/{learner_id}/{attempt_id}`; null value = erased."""

from __future__ import annotations

from datetime import datetime

from schemas.common import OutputModel


class AttemptRecord(OutputModel):
    """An attempt record created by a tracked launch."""

    tenant_id: str
    learner_id: str
    element_id: str
    attempt_id: str
    launched_at: datetime
    logically_deleted: bool
