"""The bench's report phase without a broker: its dataset, the CSV tally that decides whether a
download was complete, and how the figures are printed and written."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from streams.cli.main import build_parser
from streams.domain.recount import cut_for
from streams.domain.windows import window_of
from streams.tools import bench
from streams.tools.bench import (
    CSV_HEADER,
    BenchResult,
    CsvTally,
    report,
    report_launches,
    report_learner,
    report_license,
    report_line,
    report_table,
)

NOW = datetime(2026, 11, 30, 2, 30, tzinfo=UTC)


def csv_body(learners: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER.decode().split(","))
    for n in range(learners):
        first, last = "2026-11-01T00:00:00+00:00", "2026-11-02T00:00:00+00:00"
        writer.writerow([report_learner(n), first, last, 1, '["t1", "t2"]', "[]"])
    return out.getvalue().encode()


def tally_of(body: bytes, chunk: int) -> CsvTally:
    tally = CsvTally()
    for start in range(0, len(body), chunk):
        tally.feed(body[start : start + chunk])
    return tally


def test_every_launch_is_another_learner_in_the_current_window_and_none_in_the_future() -> None:
    window = window_of(cut_for(report_license(NOW)), NOW)
    assert window.months == 12
    learners = set()
    for key, value in report_launches(5_000, NOW):
        launch = json.loads(value)
        at = datetime.fromisoformat(launch["launched_at"])
        assert window.start_at <= at < NOW
        assert key == f"{launch['tenant_id']}/{launch['learner_id']}".encode()
        learners.add(launch["learner_id"])
    assert len(learners) == 5_000
    # the CSV is ordered by learner id: the first and last rows are known in advance
    assert min(learners) == report_learner(0) and max(learners) == report_learner(4_999)


@pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 20])
def test_a_complete_csv_passes_however_it_is_chunked(chunk: int) -> None:
    tally = tally_of(csv_body(300), chunk)
    assert tally.rows == 300
    assert tally.first_learner() == report_learner(0)
    assert tally.last_learner() == report_learner(299)
    assert tally.problems(300) == []


def test_a_short_or_cut_csv_fails() -> None:
    body = csv_body(300)
    assert "299 rows instead of 300" in tally_of(csv_body(299), 64).problems(300)[0]
    cut = tally_of(body[:-10], 64).problems(300)
    assert any("complete line" in problem for problem in cut)
    assert tally_of(b"", 64).problems(1)  # nothing at all
    assert any("header" in p for p in tally_of(b'{"learners": []}', 64).problems(0))


def test_a_csv_of_other_learners_fails() -> None:
    tally = tally_of(csv_body(300), 50)
    assert any("last learner" in problem for problem in tally.problems(299))


def figures() -> BenchResult:
    return BenchResult(
        launches=0,
        partitions=12,
        report_learners=1_000_000,
        report_s=8.4,
        report_first_byte_s=0.2,
        report_rss_before_mb=470.0,
        report_peak_rss_mb=512.0,
        report_two_s=[9.1, 9.3],
        report_two_partitions=[[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]],
        report_two_rss_mb=[(300.0, 320.0), (310.0, 350.0)],
    )


def test_the_report_line() -> None:
    assert report_line(figures()) == (
        "report 1,000,000 rows in 8.4 s (119,048 rows/s), worker RSS +42 MB (peak 512 MB); "
        "two workers: 9.1 s / 9.3 s"
    )


def test_a_report_only_run_prints_no_throughput_figures() -> None:
    printed = report(figures())
    assert printed == report_line(figures())
    assert "launches" not in printed


def test_the_written_table_has_a_row_per_answer() -> None:
    table = report_table(figures())
    assert "| one worker, every learner partition (first byte after 0.20 s) | 8.4 | 119,048 |" in (
        table
    )
    assert "470 before, peak 512 (+42)" in table
    assert "| worker 2 of two (holds partitions 6, 7, 8, 9, 10, 11) | 9.3 | 107,527 |" in table


def test_bench_flags() -> None:
    parser = build_parser()
    args = parser.parse_args(["bench"])
    assert args.report_learners == 1_000_000 and args.launches == 2_000_000
    args = parser.parse_args(["bench", "--launches", "0", "--report-learners", "0"])
    assert args.launches == 0 and args.report_learners == 0


def test_the_rss_table_splits_out_rocksdb_when_the_worker_reported_it() -> None:
    result = BenchResult(launches=3, partitions=12)
    result.rss_curve_mb = [(1_000, 300.0), (2_000, 310.0), (3_000, 320.0)]
    result.rocksdb_curve_mb = [
        {
            "memtables": 40.0,
            "table_readers": 10.0,
            "block_cache": 20.0,
            "malloc_free": 30.0,
            "python_kblocks": 900.0,
        },
        {},  # a sample the worker did not answer
        {
            "memtables": 41.0,
            "table_readers": 14.5,
            "block_cache": 20.0,
            "malloc_free": 44.5,
            "python_kblocks": 910.4,
        },
    ]
    lines = bench.rss_table(result).splitlines()
    assert "SST index and filters" in lines[0]
    assert lines[2] == "| 1,000 | 300 | 40.0 | 10.0 | 20.0 | 30.0 | 200 | 900 |"
    assert lines[3] == "| 2,000 | 310 | | | | | | |"
    assert lines[4] == "| 3,000 | 320 | 41.0 | 14.5 | 20.0 | 44.5 | 200 | 910 |"


def test_the_rss_table_without_rocksdb_figures_has_two_columns() -> None:
    result = BenchResult(launches=2, partitions=12)
    result.rss_curve_mb = [(1_000, 300.0), (2_000, 310.0)]
    result.rocksdb_curve_mb = [{}, {}]
    assert bench.rss_table(result).splitlines() == [
        "| attempts stored so far | worker RSS (MB) |",
        "|---:|---:|",
        "| 1,000 | 300 |",
        "| 2,000 | 310 |",
    ]


def test_memory_sizes_are_read_from_the_metrics_text() -> None:
    text = "\n".join(
        [
            "# HELP active_learners_rocksdb_memory_bytes ...",
            'active_learners_rocksdb_memory_bytes{kind="memtables",table="attempts"} 1048576.0',
            'active_learners_rocksdb_memory_bytes{kind="memtables",table="erasures"} 1048576.0',
            'active_learners_rocksdb_memory_bytes{kind="table_readers",table="attempts"} 524288.0',
            'active_learners_malloc_bytes{kind="in_use"} 9437184.0',
            'active_learners_malloc_bytes{kind="free"} 3145728.0',
            "active_learners_python_allocated_blocks 123456.0",
        ]
    )
    assert bench.memory_sizes(text) == {
        "memtables": 2.0,
        "table_readers": 0.5,
        "malloc_free": 3.0,
        "python_kblocks": 123.456,
    }


def test_the_largest_record_of_each_topic_comes_from_the_workers_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker deletes the command topics' records once consumed, so the tenants phase asks
    the workers for the largest record they emitted (`active_learners_largest_record_bytes`)."""
    from prometheus_client import generate_latest

    from streams.stages import metrics
    from streams.stages.memory import MemoryStore

    store = MemoryStore(partitions=1)
    batch = store.batch()
    topic = "largest-record-test"  # a topic of its own: the gauge lives as long as the process
    batch.emit(topic, b"acme", b"x" * 261_000, 0)
    batch.emit(topic, b"acme", b"x" * 10, 0)
    text = generate_latest().decode()
    monkeypatch.setattr(bench, "metrics_text", lambda worker: text)

    assert bench.largest_emitted(None)[topic] == 261_004  # type: ignore[arg-type]
    assert metrics.largest_record_bytes.labels(topic)._value.get() == 261_004
