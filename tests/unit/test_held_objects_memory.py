"""Objects the worker holds by the thousand take only their own size: encoded records waiting
for a flush keep no 4 KiB orjson buffer; the names of windows, months and cuts that every
(partition, tenant) keys its counters and tallies by are shared, not copied per tenant; and a
partition keeps no empty tallies for the tenants of which it holds no learner (the 10,000-tenant
bench, measured with tracemalloc: 28 MB of buffers behind 6,900 count records, 23 MB of copies
of the same month labels, 7 MB of cut ids, 21 MB of empty tallies)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import orjson

from streams.domain import dead_letters
from streams.domain.learners import PartitionCounters, TenantCounts
from streams.domain.tallies import Tallies, month_of_record, months_in
from streams.domain.windows import Cut
from streams.stages import commands
from tests.unit.traced import traced


def traced_bytes(make: Callable[[], Any]) -> int:
    """What the objects `make` returns (and keeps) take."""
    return traced(make)[1]


def count_record(n: int) -> dict[str, Any]:
    return {
        "tenant_id": f"tenant-{n:05d}",
        "window": {"start": "2026-01-01", "end": "2026-02-01", "months": 1},
        "active_learners": n,
        "total_learners": 5 * n,
        "licensed": True,
    }


def test_an_encoded_count_record_takes_its_own_size_not_orjsons_buffer() -> None:
    records = [count_record(n) for n in range(2_000)]
    size = sum(len(orjson.dumps(record)) for record in records)
    held = traced_bytes(lambda: [dead_letters.encode(record) for record in records])
    # a bytes object's header is 33 bytes, a list slot 8: far from 4 KiB a record
    assert held < size + 2_000 * 80, f"{held:,} bytes held for {size:,} bytes of records"
    assert [orjson.loads(dead_letters.encode(record)) for record in records] == records


def test_an_encoded_command_takes_its_own_size() -> None:
    command = commands.License("tenant-1", {"tenant_id": "tenant-1"}, None)
    size = len(orjson.dumps(command))
    held = traced_bytes(lambda: [commands.encode(command) for _ in range(2_000)])
    assert held < 2_000 * (size + 80), f"{held:,} bytes held for 2,000 commands of {size:,}"
    assert commands.decode(commands.encode(command)) == command


def test_window_names_of_every_tenants_counts_are_one_string_each() -> None:
    # as a takeover reads them: each membership's names decoded from its own bytes
    first, second = TenantCounts(), TenantCounts()
    first.add_learner(orjson.loads(b'["2026-01-01","2026-02-01"]'))
    second.add_learner(orjson.loads(b'["2026-01-01","2026-02-01"]'))
    assert first.windows == second.windows == {"2026-01-01": 1, "2026-02-01": 1}
    for a, b in zip(first.windows, second.windows, strict=True):
        assert a is b


def test_a_month_read_from_an_attempt_record_is_one_string_for_every_tenant() -> None:
    month_of = months_in("UTC")
    a = b'{"attempt_id":"a1","launched_at":"2026-03-15T10:00:00+00:00"}'
    b = b'{"attempt_id":"b7","launched_at":"2026-03-20T23:59:59+00:00"}'
    assert month_of_record(a, month_of) == month_of_record(b, month_of) == "2026-03"
    assert month_of_record(a, month_of) is month_of_record(b, month_of)


def test_a_cut_id_is_one_string_for_every_cut_of_the_same_license() -> None:
    first = Cut(date(2024, 12, 1), 1, "Europe/Berlin")
    second = Cut(date(2024, 12, 1), 1, "Europe/Berlin")
    assert first is not second
    assert first.id == "2024-12-01/1/Europe/Berlin"
    assert first.id is second.id


def test_a_partition_keeps_no_tallies_for_a_tenant_whose_re_cut_found_no_learners() -> None:
    counters = PartitionCounters()
    counters.reset_partition(3, (1, 1), {}, {}, tracked_from=100.0)
    counters.replace(3, "acme", TenantCounts(cut_id="c"), Tallies(100.0))
    assert counters.tallies_if_any(3, "acme") is None
    assert counters.get(3, "acme") == TenantCounts(cut_id="c")  # still reported
    tallies = Tallies(100.0)
    tallies.months["2026-01"] = 1
    counters.replace(3, "acme", TenantCounts(cut_id="c"), tallies)
    assert counters.tallies_if_any(3, "acme") is tallies
    counters.replace(3, "acme", TenantCounts(cut_id="c"), Tallies(100.0))  # a re-cut emptied it
    assert counters.tallies_if_any(3, "acme") is None
