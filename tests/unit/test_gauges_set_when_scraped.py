"""A tenant's gauges are set when /metrics is asked for, not at every count record.

The read model reads a count record per tenant per partial report (two a second per busy tenant
by default); setting four Prometheus series for each took 3-4 % of the worker's main thread at
10,000 launches/s. A changed tenant is noted and its gauges set by `flush_gauges`, which the
/metrics view calls before it answers (tests/integration/test_web.py scrapes it)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from streams.http import outputs_reader
from streams.http.gauges import TenantGauges
from streams.http.read_model import ReadModel
from tests.unit.test_api import count
from tests.unit.test_unbounded_gauges_review import END, START, _caught_up


def _active(tenant: str) -> float | None:
    return REGISTRY.get_sample_value("active_learners_tenant_active", {"tenant": tenant})


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> ReadModel:
    """A read model that caught up, feeding the gauges, their clock in the counts' window."""
    return _caught_up(monkeypatch)


def _read(model: ReadModel, tenant: str, active: int) -> None:
    record = count(tenant, START, END, active, 40, months=12)
    model.apply_count(f"{tenant}/{START}".encode(), record)


def test_a_count_record_sets_the_gauges_at_the_next_flush(model: ReadModel) -> None:
    tenant = "scrape-1"
    _read(model, tenant, 7)
    assert _active(tenant) is None  # noted only
    outputs_reader.flush_gauges()
    assert _active(tenant) == 7
    _read(model, tenant, 8)
    _read(model, tenant, 9)
    assert _active(tenant) == 7
    outputs_reader.flush_gauges()
    assert _active(tenant) == 9  # the newest record read


def test_a_tenant_is_noted_once_however_many_records_came(model: ReadModel) -> None:
    for active in range(1, 101):
        _read(model, "scrape-many", active)
        _read(model, "scrape-other", active)
    assert isinstance(model.on_counts, TenantGauges)
    assert model.on_counts.noted == {"scrape-many", "scrape-other"}
    outputs_reader.flush_gauges()
    assert model.on_counts.noted == set()
    assert (_active("scrape-many"), _active("scrape-other")) == (100, 100)


def test_records_read_before_the_catch_up_are_not_noted(model: ReadModel) -> None:
    """What the model read before it caught up may be a window's older record: the refresh at
    catch-up sets every tenant's gauges from what it has then."""
    model.caught_up.clear()
    _read(model, "scrape-early", 120)
    assert isinstance(model.on_counts, TenantGauges)
    assert model.on_counts.noted == set()
    outputs_reader.flush_gauges()
    assert _active("scrape-early") is None


def test_a_tenant_whose_record_is_not_the_services_is_skipped_by_the_flush(
    model: ReadModel,
) -> None:
    """A record on the count topic without the service's fields: its tenant's gauges are
    skipped with a warning, the other tenants' set (raised, the scrape answered a 500)."""
    model.apply_count(f"scrape-foreign/{START}".encode(), b'{"tenant_id": "x"}')
    _read(model, "scrape-good", 5)
    outputs_reader.flush_gauges()
    assert _active("scrape-good") == 5
    assert _active("scrape-foreign") is None


def test_a_count_past_what_a_gauge_holds_is_skipped_by_the_flush_and_the_refresh(
    model: ReadModel,
) -> None:
    """A record on the count topic that is not the service's, with a number no float holds:
    setting its gauge raised OverflowError, which /metrics answered with a 500 (and dropped the
    tenants noted after it), and the 15 s refresh, out of its timer, crashed the worker at every
    start (helper-115). It is skipped with a warning; the other tenants' gauges and the
    unlicensed sums are set."""
    record = count("scrape-huge", START, END, 5, 40, months=12).replace(
        b'"active_learners": 5', b'"active_learners": 1' + b"0" * 400
    )
    assert b"0" * 400 in record
    model.apply_count(f"scrape-huge/{START}".encode(), record)
    _read(model, "scrape-fine", 6)
    outputs_reader.flush_gauges()
    assert _active("scrape-fine") == 6
    assert _active("scrape-huge") is None
    _read(model, "scrape-fine", 7)
    outputs_reader.counts_changed()  # the refresh of every 15 s
    assert _active("scrape-fine") == 7
    assert REGISTRY.get_sample_value("active_learners_unlicensed_active") == 7
