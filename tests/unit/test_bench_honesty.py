"""What the bench's figures rest on, without a broker: when the counts are taken as exact, where
the throughput clock starts, which count record times a latency probe, and what the deletion
line says when the receipt's count is not the bench's own (an audit of issue 19's figures)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from streams.config.settings import Settings
from streams.tools.bench import (
    BIG_TENANT,
    BenchResult,
    Expected,
    counts_exact,
    first_assignment_wall,
    first_receipts,
    note_probe,
    percentile,
    report,
    tracked_launches,
)


def count(tenant: str, start: str, active: int) -> tuple[bytes, bytes]:
    value = {"tenant_id": tenant, "window": {"start": start}, "active_learners": active}
    return f"{tenant}/{start}".encode(), json.dumps(value).encode()


def test_every_window_of_the_recount_must_show_its_count() -> None:
    expected = {("acme", "2026-01-01"): (3, 3), ("beta", "2026-01-01"): (1, 1)}
    live = dict([count("acme", "2026-01-01", 3), count("beta", "2026-01-01", 1)])
    assert counts_exact(live, expected)
    live.update([count("beta", "2026-01-01", 2)])
    assert not counts_exact(live, expected)
    del live[b"beta/2026-01-01"]
    assert not counts_exact(live, expected)


def test_a_window_the_deletion_emptied_must_show_no_learner() -> None:
    """After a deletion of every attempt of a tenant the recount has no window of it: its old
    records must then say 0 (or be tombstoned), not be left unchecked."""
    expected = {("other", "2026-01-01"): (2, 2)}  # the big tenant has no window left
    live = dict([count("other", "2026-01-01", 2), count(BIG_TENANT, "2026-01-01", 25_061)])
    assert not counts_exact(live, expected)
    live.update([count(BIG_TENANT, "2026-01-01", 0)])
    assert counts_exact(live, expected)
    live[f"{BIG_TENANT}/2026-01-01".encode()] = None  # a tombstone
    assert counts_exact(live, expected)


def test_a_window_counted_that_the_recount_does_not_have_is_not_exact() -> None:
    expected = {("acme", "2026-01-01"): (3, 3)}
    live = dict([count("acme", "2026-01-01", 3), count("acme", "2025-01-01", 1)])
    assert not counts_exact(live, expected)


def log_line(epoch: float, pid: int, message: str) -> str:
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))
    return f"[{local},{int(epoch * 1000) % 1000:03d}] [{pid}] [INFO] {message}"


def test_the_clock_starts_when_the_first_launch_reader_has_partitions() -> None:
    """`worker --processes 2`: the first process to join the launch group reads every partition
    until the second joins (the broker does not delay the first rebalance), so the clock starts
    at the first assignment, not when every process has had one."""
    first = 1_796_342_382.381  # 2026-12-03 23:59:42.381 UTC
    reader = "streams.worker.agents.launch_reader: launch reader:"
    log = "\n".join(
        [
            log_line(first - 5, 1, "faust.worker: starting"),
            log_line(first - 1, 2, f"{reader} 0 partitions of launches assigned"),
            log_line(first, 1, f"{reader} 12 partitions of launches assigned"),
            log_line(first + 0.5, 1, f"{reader} could not compare offsets with retention: x"),
            log_line(first + 3.636, 2, f"{reader} 6 partitions of launches assigned"),
            log_line(first + 3.653, 1, f"{reader} 6 partitions of launches assigned"),
        ]
    )
    assert abs(first_assignment_wall(log) - first) < 0.002


def test_a_probe_is_timed_by_a_record_that_counts_it() -> None:
    """A count record of the probe's tenant with no active learner (its current window, whose
    total changed when the probe's launch fell in the window before) does not count the probe."""
    sent_at, latencies = {"probe-00001": 100.0}, {}
    current = {"tenant_id": "probe-00001", "active_learners": 0, "total_learners": 1}
    note_probe(json.dumps(current).encode(), 100.4, sent_at, latencies)
    note_probe(None, 100.5, sent_at, latencies)
    note_probe(json.dumps({**current, "tenant_id": "steady-001"}).encode(), 100.5, sent_at, {})
    assert latencies == {}
    counted = {**current, "active_learners": 1}
    note_probe(json.dumps(counted).encode(), 100.7, sent_at, latencies)
    note_probe(json.dumps(counted).encode(), 101.0, sent_at, latencies)
    assert latencies == {"probe-00001": 100.7 - 100.0}


def test_the_bench_counts_the_attempts_each_tenant_launched() -> None:
    expected = Expected()
    launches = list(tracked_launches(2_000, 20, 1, datetime(2026, 12, 4, tzinfo=UTC), expected))
    big = sum(1 for key, _ in launches if key.startswith(f"{BIG_TENANT}/".encode()))
    assert expected.attempts[BIG_TENANT] == big
    assert sum(expected.attempts.values()) == 2_000


def test_the_deletion_line_says_when_the_receipt_is_not_the_bench_count() -> None:
    result = BenchResult(launches=0, partitions=12, deletion_s=10.0, deletion_exact=True)
    result.deletion_attempts = result.deletion_launched = 1_000_832
    assert "RECEIPT" not in report(result)
    result.deletion_attempts = 2_001_664  # a receipt that counts every attempt twice
    line = report(result)
    assert "200,166 attempts/s" in line
    assert "THE RECEIPT SAYS 2,001,664, 1,000,832 were launched" in line


def test_the_throughput_line_says_where_its_clock_starts() -> None:
    result = BenchResult(launches=1_000_000, partitions=12, worker_s=40.0)
    line = next(row for row in report(result).splitlines() if "end to end" in row)
    assert "25,000/s" in line
    assert "from the first launch reader's partitions to every count exact" in line


def test_the_workers_cpu_a_launch_is_printed_when_measured() -> None:
    result = BenchResult(launches=1_000_000, partitions=12, worker_s=40.0)
    assert "worker CPU" not in report(result)  # not measured (a run of older code's figures)
    result.worker_cpu_s = 38.5
    line = next(row for row in report(result).splitlines() if "worker CPU" in row)
    assert "38.5 us a launch" in line
    assert "38.5 s of its threads and processes" in line
    assert "main threads" not in line
    result.worker_main_cpu_s = 27.25
    line = next(row for row in report(result).splitlines() if "worker CPU" in row)
    assert line.endswith("over the count), of which its main threads 27.2 us")


def test_the_workers_cpu_an_attempt_of_the_deletion_is_printed_when_measured() -> None:
    result = BenchResult(launches=0, partitions=12, deletion_s=8.0, deletion_exact=True)
    result.deletion_attempts = result.deletion_launched = 1_000_000
    assert "worker CPU" not in report(result)
    result.deletion_cpu_s = 8.25
    line = next(row for row in report(result).splitlines() if row.startswith("deletion"))
    assert "125,000 attempts/s" in line
    assert "worker CPU 8.2 us an attempt, 8.2 s to the receipt read" in line
    result.deletion_main_cpu_s = 6.5
    line = next(row for row in report(result).splitlines() if row.startswith("deletion"))
    assert "worker CPU 8.2 us an attempt (its main threads 6.5 us), 8.2 s to the" in line


def test_a_deletion_is_timed_to_its_first_receipt() -> None:
    """The receipt's own timestamp ends the deletion's clock (not the poll that saw it), and a
    receipt delivered again later (at least once) does not move it."""

    def receipt(request_id: str, at_ms: int, attempts: int) -> SimpleNamespace:
        value = {"request_id": request_id, "attempts_affected": attempts}
        return SimpleNamespace(value=json.dumps(value).encode(), timestamp=at_ms)

    records = [
        receipt("earlier-run", 1_000, 7),
        SimpleNamespace(value=None, timestamp=1_500),
        receipt("r1", 12_345, 1_000_832),
        receipt("r1", 19_000, 1_000_832),
    ]
    found = first_receipts(records, {"r1"})
    assert found == {"r1": ({"request_id": "r1", "attempts_affected": 1_000_832}, 12_345)}


def test_the_tenants_phase_is_timed_to_the_record_that_made_the_counts_exact(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each of its three figures runs from the worker's start to the last count record of the
    exact counts, as the throughput figure does; the poll that reads every count record (seconds
    with 240,000 of them) and sees them exact comes later."""
    from streams.tools import bench

    class Started:
        def __init__(self, exact_after_s: float) -> None:
            self.started, self.started_wall = time.monotonic(), 1_000.0
            self.exact_wall = self.started_wall + exact_after_s
            self.process = None

        def wait_ready(self) -> float:
            return 0.0

        def stop(self) -> None:
            pass

    workers = iter([Started(42.0), Started(21.0), Started(30.5)])
    current: list[Started] = []

    def start(settings: Settings, name: str) -> Started:
        current.append(next(workers))
        return current[-1]

    async def nothing(*args: object) -> dict[str, int]:
        return {}

    monkeypatch.setattr(bench, "bench_worker", start)
    monkeypatch.setattr(bench, "ensure_topics", lambda settings: None)
    monkeypatch.setattr(bench, "produce_fast", nothing)
    monkeypatch.setattr(bench, "largest_records", nothing)
    monkeypatch.setattr(bench, "largest_emitted", lambda worker: {})
    monkeypatch.setattr(bench, "wait_exact", lambda *args: current[-1].exact_wall)
    settings = Settings(topic_prefix="t-", state_dir=tmp_path / "state")
    phase = bench.run_tenants(settings, 3, 2, datetime(2026, 12, 4, tzinfo=UTC), lambda _: None)
    assert (phase.exact_s, phase.restart_s, phase.wiped_s) == (42.0, 21.0, 30.5)


@pytest.mark.parametrize(
    ("count", "pct", "rank"),
    [
        (300, 99, 297),
        (299, 99, 297),  # 296.01 rounds to 296: one rank under the p99
        (150, 99, 149),  # 148.5 rounds to 148 (to even)
        (301, 99, 298),
        (100, 99, 99),
        (300, 50, 150),
        (4, 50, 2),
        (1, 99, 1),
        (3, 100, 3),
    ],
)
def test_a_percentile_is_the_nearest_rank(count: int, pct: float, rank: int) -> None:
    values = [float(n) for n in range(count, 0, -1)]  # the rank-th smallest is `rank`
    assert percentile(values, pct) == rank
