"""The per-tenant gauges of /metrics are bounded (helper-97's review of what grows without bound).

Every tenant id a producer sends is a tenant (counted without a license), and each had four
series in every worker's /metrics for good, also after it was no tenant any more. A tenant has
series of its own while it has a license, an unlicensed one while there are at most
UNLICENSED_SERIES_MAX unlicensed tenants (past that they are summed only), and a tenant that is
gone has none."""

from __future__ import annotations

import json
from datetime import UTC, datetime, tzinfo

import pytest
from prometheus_client import REGISTRY

from streams.http import gauges, outputs_reader
from streams.http.gauges import tenant_counts_changed
from streams.http.read_model import ReadModel
from tests.unit.test_api import LICENSE, count

# the gauges' clock, pinned inside the window the counts are in: read from the real clock at
# import, a run that crossed New Year (`make dates`) asked for next year's window, empty
NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)
START, END = "2026-01-01", "2027-01-01"


class _Pinned(datetime):
    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
        return NOW.astimezone(tz)


SERIES = (
    "active_learners_tenant_active",
    "active_learners_tenant_total",
    "active_learners_tenant_limit",
    "active_learners_tenant_utilization_pct",
)


def _series(tenant: str) -> list[str]:
    """The per-tenant series /metrics shows for the tenant."""
    return [n for n in SERIES if REGISTRY.get_sample_value(n, {"tenant": tenant}) is not None]


def _caught_up(monkeypatch: pytest.MonkeyPatch) -> ReadModel:
    monkeypatch.setattr(gauges, "datetime", _Pinned)
    model = ReadModel()
    model.on_counts = tenant_counts_changed(model)
    model.caught_up.set()
    monkeypatch.setattr(outputs_reader, "model", model)
    return model


def _unlicensed(model: ReadModel, tenant: str, active: int, total: int) -> None:
    record = count(tenant, START, END, active, total, months=12)
    model.apply_count(f"{tenant}/{START}".encode(), record)


def test_a_tenant_that_is_gone_loses_its_series(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _caught_up(monkeypatch)
    tenant = "h97-gone"
    licensed = {**LICENSE, "tenant_id": tenant, "window_months": 12}
    model.apply_license(tenant.encode(), json.dumps(licensed).encode())
    _unlicensed(model, tenant, 3, 4)
    outputs_reader.counts_changed()
    assert _series(tenant) == list(SERIES)
    # its license removed, its last attempt deleted: no license and no count record
    model.apply_license(tenant.encode(), None)
    model.apply_count(f"{tenant}/{START}".encode(), None)
    outputs_reader.counts_changed()
    assert tenant not in model.tenants()
    assert _series(tenant) == []


def test_tenant_ids_a_producer_makes_up_do_not_grow_the_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gauges, "UNLICENSED_SERIES_MAX", 3, raising=False)
    model = _caught_up(monkeypatch)
    licensed = {**LICENSE, "tenant_id": "h97-licensed", "window_months": 12}
    model.apply_license(b"h97-licensed", json.dumps(licensed).encode())
    _unlicensed(model, "h97-licensed", 7, 9)
    made_up = [f"h97-made-up-{n}" for n in range(5)]
    for n, tenant in enumerate(made_up[:3]):
        _unlicensed(model, tenant, n + 1, 10)
    outputs_reader.counts_changed()
    assert [bool(_series(t)) for t in made_up] == [True, True, True, False, False]
    for n, tenant in enumerate(made_up[3:], start=3):
        _unlicensed(model, tenant, n + 1, 10)  # (as they arrive: at most 3 with series)
    assert [bool(_series(t)) for t in made_up] == [True, True, True, False, False]
    outputs_reader.counts_changed()
    assert [bool(_series(t)) for t in made_up] == [False] * 5, "more than 3: all summed"
    assert _series("h97-licensed") == list(SERIES)
    assert REGISTRY.get_sample_value("active_learners_unlicensed_tenants") == 5
    assert REGISTRY.get_sample_value("active_learners_unlicensed_active") == 1 + 2 + 3 + 4 + 5
    assert REGISTRY.get_sample_value("active_learners_unlicensed_total") == 50
    _unlicensed(model, made_up[0], 6, 11)  # a record of one of them: still summed only
    assert _series(made_up[0]) == []
