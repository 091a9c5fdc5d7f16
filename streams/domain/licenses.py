"""A tenant's license as the stages store it: `{"license": {...} | None}` (None = default)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from schemas.licenses import STORED, License, default_license
from streams.domain.windows import DEFAULT_CUT, Cut


def license_from(tenant_id: str, stored: Mapping[str, Any] | None) -> tuple[License, bool]:
    """The governing license of a tenant and whether it is a real one (`licensed`)."""
    if stored is None or stored.get("license") is None:
        return default_license(tenant_id), False
    return License.model_validate(stored["license"], context=STORED), True


def cut_of(stored: Mapping[str, Any] | None) -> Cut:
    """The window cut of a stored license, without validating the whole license again."""
    if stored is None or stored.get("license") is None:
        return DEFAULT_CUT
    lic = stored["license"]
    return Cut(date.fromisoformat(lic["cycle_start"]), int(lic["window_months"]), lic["timezone"])
