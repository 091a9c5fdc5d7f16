"""The per-tenant gauges of /metrics, kept in step with the read model."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

from streams.http.api import tenant_summary
from streams.http.read_model import ReadModel
from streams.stages import metrics


def tenant_counts_changed(model: ReadModel) -> Callable[[str], None]:
    """A callback that sets a tenant's gauges from the read model, once it caught up: what it
    read before may be a window's older records (a compacted topic keeps them until it is
    compacted), which the API does not answer either (503). The reader sets every tenant's
    gauges when it has caught up."""

    def update(tenant_id: str) -> None:
        if not model.caught_up.is_set():
            return
        summary = tenant_summary(model, tenant_id, datetime.now(UTC))
        metrics.tenant_active.labels(tenant_id).set(summary["active_learners"])
        metrics.tenant_total.labels(tenant_id).set(summary["total_learners"])
        if summary["learner_limit"] is None:
            for gauge in (metrics.tenant_limit, metrics.tenant_utilization):
                with contextlib.suppress(KeyError):  # it had no limit before either
                    gauge.remove(tenant_id)
        else:
            metrics.tenant_limit.labels(tenant_id).set(summary["learner_limit"])
            metrics.tenant_utilization.labels(tenant_id).set(summary["utilization_pct"])

    return update
