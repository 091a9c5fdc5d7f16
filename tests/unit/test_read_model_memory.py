"""The read model keeps what it read as the topics' bytes and parses a record when asked: every
worker reads every tenant's count records, events and receipts, and parsed they took four to
five times their bytes (10,000 tenants with two years of monthly windows: 324 MB of count
records in every worker, 90 MB as bytes)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from streams.http.read_model import ReadModel
from tests.unit.traced import traced


def count(tenant: str, month: int) -> tuple[bytes, dict[str, Any]]:
    start, end = f"2025-{month:02d}-01", f"2025-{month + 1:02d}-01"
    record = {
        "tenant_id": tenant,
        "window": {"start": start, "end": end, "months": 1},
        "active_learners": month,
        "total_learners": 5 * month,
        "learner_limit": 100,
        "utilization_pct": float(month),
        "licensed": True,
        "updated_at": "2026-12-04T09:23:11.123456+00:00",
    }
    return f"{tenant}/{start}".encode(), record


def event(tenant: str, n: int) -> dict[str, Any]:
    return {
        "event_id": f"0b9c3f4e-1d2a-5b6c-8d7e-{n:012d}",
        "tenant_id": tenant,
        "window": {"start": "2026-01-01", "end": "2026-02-01", "months": 1},
        "threshold_pct": 90,
        "threshold_learners": 450,
        "direction": "up",
        "active_learners": 452,
        "learner_limit": 500,
        "notify": ["admin@tenant.example", "billing@tenant.example"],
        "occurred_at": "2026-01-20T10:00:00.123456+00:00",
    }


def receipt(tenant: str, n: int) -> dict[str, Any]:
    return {
        "request_id": f"r-{n}",
        "tenant_id": tenant,
        "mode": "physical",
        "selector": {"kind": "learner_ids", "values": ["l-1", "l-2", "l-3"]},
        "requested_at": "2026-01-20T10:00:00+00:00",
        "requested_by": "cli:ops",
        "reason": "GDPR request",
        "attempts_affected": 12,
        "learners_affected": 3,
        "windows": [{"start": "2026-01-01", "active_before": 10, "active_after": 7}],
        "completed_at": "2026-01-20T10:00:01+00:00",
        "error": None,
    }


def bytes_per_record(fill: Callable[[ReadModel], int]) -> tuple[ReadModel, float]:
    """The read model `fill` filled, and the memory it took per record."""

    def filled() -> tuple[ReadModel, int]:
        model = ReadModel()
        return model, fill(model)

    (model, records), used = traced(filled)
    return model, used / records


def parsed_bytes(record: dict[str, Any], copies: int = 2_000) -> float:
    """What one record takes parsed, as the read model held them before, measured here (object
    sizes differ between Python versions: the bounds below are relative to it)."""
    raw = json.dumps(record).encode()
    kept, used = traced(lambda: [json.loads(raw) for _ in range(copies)])
    assert len(kept) == copies
    return used / copies


def test_count_records_take_about_their_bytes() -> None:
    def fill(model: ReadModel) -> int:
        for tenant in range(1_000):
            for month in range(1, 12):
                key, record = count(f"tenant-{tenant:05d}", month)
                model.apply_count(key, json.dumps(record).encode())
        return 11_000

    model, used = bytes_per_record(fill)
    parsed = parsed_bytes(count("tenant-00000", 1)[1])  # 1,350 bytes on 3.13, of 255
    assert used < parsed / 2, f"{used:.0f} bytes a count record, {parsed:.0f} parsed"
    assert model.windows_of("tenant-00007") == [count("tenant-00007", m)[1] for m in range(1, 12)]
    assert model.count_record("tenant-00007", "2025-03-01") == count("tenant-00007", 3)[1]
    assert model.count_record("tenant-00007", "2024-03-01") is None
    assert model.latest_record("tenant-00007") == count("tenant-00007", 11)[1]
    assert model.record_of_day("tenant-00007", "2025-04-30") == count("tenant-00007", 4)[1]
    assert model.record_of_day("tenant-00007", "2025-12-01") is None  # no window holds it
    assert model.latest_record("nobody") is None


def test_threshold_events_take_about_their_bytes() -> None:
    def fill(model: ReadModel) -> int:
        for n in range(10_000):
            model.apply_event(json.dumps(event(f"tenant-{n % 100:05d}", n)).encode())
        return 10_000

    model, used = bytes_per_record(fill)
    parsed = parsed_bytes(event("tenant-00000", 0))  # 1,770 bytes on 3.13, of 376
    assert used < parsed / 2, f"{used:.0f} bytes an event, {parsed:.0f} parsed"
    assert model.recent_events("tenant-00042") == [
        event("tenant-00042", n) for n in range(10_000) if n % 100 == 42
    ]


def test_receipts_take_about_their_bytes() -> None:
    def fill(model: ReadModel) -> int:
        for n in range(10_000):
            model.apply_receipt(json.dumps(receipt(f"tenant-{n % 100:05d}", n)).encode())
        return 10_000

    model, used = bytes_per_record(fill)
    # (and two entries: by request id, and in the tenant's trail)
    parsed = parsed_bytes(receipt("tenant-00000", 0))  # 2,700 bytes on 3.13, of 425
    assert used < parsed / 2, f"{used:.0f} bytes a receipt, {parsed:.0f} parsed"
    assert model.receipt("tenant-00042", "r-4242") == receipt("tenant-00042", 4242)
    assert model.receipts_of("tenant-00042", 2) == [
        receipt("tenant-00042", 9942),
        receipt("tenant-00042", 9842),
    ]
    found = asyncio.run(model.wait_for_receipt("tenant-00042", "r-142", 0.0))
    assert found == receipt("tenant-00042", 142)


def test_a_count_record_that_is_not_the_services_is_kept_and_read_back() -> None:
    # (only the tenant stage writes the topic; a record of another shape must not stop the
    # reader, which it did not before either)
    model = ReadModel()
    model.apply_count(b"acme/2026-01-01", b"[1, 2]")
    model.apply_count(b"acme/2026-02-01", b'{"window": "2026-02"}')
    assert model.windows_of("acme") == [[1, 2], {"window": "2026-02"}]
    assert model.record_of_day("acme", "2026-01-15") is None
