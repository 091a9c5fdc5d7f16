"""The per-tenant gauges of /metrics, kept in step with the read model.

A series per tenant grows /metrics with every tenant id a producer sends: launches of random
tenant ids are each counted as an unlicensed tenant (the contract), and each had four series in
every worker's /metrics for good. So a tenant has series of its own while it has a license (the
LMS's compacted `licenses` topic bounds those), and an unlicensed one only while there are at
most UNLICENSED_SERIES_MAX unlicensed tenants; past that, none has, and the unlicensed tenants
are summed (`active_learners_unlicensed_*`, always there). A tenant that is no tenant any more
(no license and no count record) loses its series.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from streams.http.api import tenant_summary
from streams.http.read_model import ReadModel
from streams.stages import metrics

log = logging.getLogger(__name__)

# unlicensed tenants with series of their own at most (past it, all of them are summed only)
UNLICENSED_SERIES_MAX = 1_000

_SERIES = (
    metrics.tenant_active,
    metrics.tenant_total,
    metrics.tenant_limit,
    metrics.tenant_utilization,
)


class TenantGauges:
    """Sets a tenant's gauges from the read model (called with a tenant id whose counts
    changed), once it caught up: what it read before may be a window's older records (a
    compacted topic keeps them until it is compacted), which the API does not answer either
    (503). `refresh` (at catch-up and every 15 s) sets every tenant's, drops the series of
    tenants that lost theirs and sums the unlicensed tenants.

    A tenant whose counts changed is only noted; `flush` sets the noted tenants' gauges, and
    /metrics calls it before it answers, so a scrape sees every count read. Set at every count
    record, they cost 3-4 % of the worker's main thread at 10,000 launches/s (a count record
    per tenant per partial report), for values nobody reads between two scrapes."""

    def __init__(self, model: ReadModel) -> None:
        self.model = model
        self.licensed: set[str] = set()  # tenants with series of their own, by kind
        self.unlicensed: set[str] = set()
        # more unlicensed tenants than UNLICENSED_SERIES_MAX at the last refresh: summed only
        self.summed = False
        self.noted: set[str] = set()  # tenants whose counts changed since the last flush

    def __call__(self, tenant_id: str) -> None:
        if self.model.caught_up.is_set():
            self.noted.add(tenant_id)

    def flush(self) -> None:
        """The gauges of the tenants noted since the last flush set from the read model."""
        noted, self.noted = self.noted, set()
        for tenant_id in sorted(noted):
            try:
                self._set(tenant_id)
            except Exception as exc:  # a record not the service's: none of its fields trusted
                log.warning("read model: no gauges of %r (%s)", tenant_id, type(exc).__name__)
                self._remove(tenant_id)  # (a series `_update` began)

    def _set(self, tenant_id: str) -> None:
        licensed = self.model.license_of(tenant_id) is not None
        if self._own(tenant_id, licensed):
            self._update(tenant_id, tenant_summary(self.model, tenant_id, datetime.now(UTC)))
        else:
            self._remove(tenant_id)

    def _own(self, tenant_id: str, licensed: bool) -> bool:
        """Whether the tenant has series of its own."""
        if licensed:
            return True
        if self.summed or not self.model.has_counts(tenant_id):
            return False
        return tenant_id in self.unlicensed or len(self.unlicensed) < UNLICENSED_SERIES_MAX

    def _update(self, tenant_id: str, summary: dict[str, Any]) -> None:
        (self.licensed if summary["licensed"] else self.unlicensed).add(tenant_id)
        (self.unlicensed if summary["licensed"] else self.licensed).discard(tenant_id)
        metrics.tenant_active.labels(tenant_id).set(summary["active_learners"])
        metrics.tenant_total.labels(tenant_id).set(summary["total_learners"])
        if summary["learner_limit"] is None:
            for gauge in (metrics.tenant_limit, metrics.tenant_utilization):
                with contextlib.suppress(KeyError):  # it had no limit before either
                    gauge.remove(tenant_id)
        else:
            metrics.tenant_limit.labels(tenant_id).set(summary["learner_limit"])
            metrics.tenant_utilization.labels(tenant_id).set(summary["utilization_pct"])

    def _remove(self, tenant_id: str) -> None:
        if tenant_id not in self.licensed and tenant_id not in self.unlicensed:
            return
        self.licensed.discard(tenant_id)
        self.unlicensed.discard(tenant_id)
        for gauge in _SERIES:
            with contextlib.suppress(KeyError):  # (a series it never had)
                gauge.remove(tenant_id)

    def refresh(self) -> None:
        """Every tenant's gauges set again (the current window moves with the clock); a tenant
        whose records are not the service's is skipped with a warning, as the reader skips a
        record it cannot apply (raised here, out of the reader's task or its timer, mode
        crashes the service) (helper-93)."""
        if not self.model.caught_up.is_set():
            return
        self.noted.clear()  # every tenant's gauges are set below
        tenants = self.model.tenants()
        unlicensed = [t for t in tenants if self.model.license_of(t) is None]
        self.summed = len(unlicensed) > UNLICENSED_SERIES_MAX
        for gone in (self.licensed | self.unlicensed) - set(tenants):
            self._remove(gone)
        active = total = 0
        for tenant_id in tenants:
            try:
                licensed = self.model.license_of(tenant_id) is not None
                summary = tenant_summary(self.model, tenant_id, datetime.now(UTC))
                if not licensed:
                    more = active + summary["active_learners"], total + summary["total_learners"]
                    float(more[0]), float(more[1])  # (a gauge's float: an int past it raises)
                    active, total = more
                if self._own(tenant_id, licensed):
                    self._update(tenant_id, summary)
                else:
                    self._remove(tenant_id)
            except Exception as exc:  # a record not the service's: none of its fields trusted
                log.warning("read model: no gauges of %r (%s)", tenant_id, type(exc).__name__)
                self._remove(tenant_id)  # (a series `_update` began)
        metrics.unlicensed_tenants.set(len(unlicensed))
        metrics.unlicensed_active.set(active)
        metrics.unlicensed_total.set(total)


def tenant_counts_changed(model: ReadModel) -> TenantGauges:
    """The read model's `on_counts`: a tenant's gauges set when its counts change."""
    return TenantGauges(model)
