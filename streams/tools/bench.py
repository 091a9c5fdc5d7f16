"""`active-learners bench`: what one worker does on this machine, measured end to end.

Each run uses a fresh topic prefix and state folder, and measures in this order:

1. throughput  N tracked launches (many tenants, skewed learners) are produced first; then one
               worker starts, and the clock runs from the moment its launch reader is assigned
               its partitions (start-up excluded, printed apart) to the last count record that
               made every count equal to an independent recount. The same launches read by a
               plain aiokafka consumer give the ceiling for a Python consumer here.
2. memory      the worker's RSS sampled along the way, against the attempts stored so far.
3. recovery    the worker stops; a new one starts on an empty state folder and restores the
               state from the changelogs (records/s from its log).
4. deletion    on that restored worker, a physical `older_than` deletion of about half of the
               attempts: attempts/s until the receipt, peak RSS, counts exact afterwards.
5. latency     a fresh worker under a steady load: probe launches (each the first of a new
               tenant) are timed from their send to the count record that counts them.
6. report      N learners of one tenant, all counted in the current window of a 12-month
               license; once a worker counts them all, the window's learners are downloaded as
               CSV (timed, rows counted, the worker's RSS sampled); then a second worker joins
               and the same CSV is downloaded from each of the two (each gathers the other's
               partitions over HTTP), every answer complete.

`--launches 0` skips phases 1-4 (a report or latency run alone).

Why one module of this size: the benchmark is one program read top to bottom (produce, count,
restore, delete, latency, report); its parts are used nowhere else.
"""

from __future__ import annotations

import asyncio
import csv
import http.client
import json
import math
import os
import random
import re
import secrets
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zlib import crc32

from schemas import topics
from streams.config.settings import Settings
from streams.kafka.admin import ensure_topics
from streams.kafka.io import produce_records, read_records
from streams.kafka.settle import end_offset, group_lag
from streams.tools import pg_baseline
from streams.tools.pg_baseline import Baseline
from streams.tools.worker_process import (
    WorkerProcess,
    cpu_seconds,
    free_port,
    main_thread_cpu_seconds,
    rss_mb,
    wait_for,
)

Log = Callable[[str], None]
WARMUP_S = 5.0
RESTORE_LINE = re.compile(
    r"restored (\d+) changelog records of \d+ partitions in bulk in ([\d.]+)s"
)
# the learner stage's takeover: counts and report tallies from the restored tables
REBUILD_LINE = re.compile(r"learner partition \d+ rebuilt .* in ([\d.]+) s")


@dataclass
class BenchResult:
    launches: int
    partitions: int
    produce_per_s: float = 0.0
    raw_consumer_per_s: float = 0.0
    startup_s: float = 0.0
    worker_s: float = 0.0
    # the worker's CPU (every thread and process of it) over the counted seconds: whether a
    # backlog kept it busy (about a core: one event loop, plus its consumer and RocksDB threads)
    # or it waited (for the broker, for the cores it shares with the broker)
    worker_cpu_s: float = 0.0
    # of it, the main threads' (the event loops, where the stages run: a step that saves the
    # stages' work shows here first, without RocksDB's compactions and the clients' threads)
    worker_main_cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    rss_curve_mb: list[tuple[int, float]] = field(default_factory=list)
    # RocksDB's share of each sample above (MB by kind, from the worker's /metrics; {} if none)
    rocksdb_curve_mb: list[dict[str, float]] = field(default_factory=list)
    recovery_records: int = 0
    recovery_s: float = 0.0
    rebuild_s: float = 0.0  # the takeover after the restore (counts and report tallies)
    deletion_attempts: int = 0
    deletion_s: float = 0.0
    deletion_peak_rss_mb: float = 0.0
    deletion_exact: bool | None = None
    deletion_launched: int = 0  # the attempts the deletion must remove, counted by the bench
    # the worker's CPU (all its threads and processes) from the request's send to its receipt
    # read back by the bench (0.0: not measured)
    deletion_cpu_s: float = 0.0
    deletion_main_cpu_s: float = 0.0  # of it, the main threads' (the stages')
    latencies_s: list[float] = field(default_factory=list)
    # each probe's first hop: its send to its attempt record (the learner stage's flush); the
    # rest of its latency is the partial report's wait and the tenant stage
    latency_to_attempt_s: list[float] = field(default_factory=list)
    latency_rate: int = 0
    report_learners: int = 0
    report_count_s: float = 0.0  # from the worker's start to its count equal to the learners
    report_s: float = 0.0  # the CSV download from one worker holding every partition
    report_first_byte_s: float = 0.0
    # seconds of one call each on the same tenant: forecast, advisor, groups
    report_calls_s: dict[str, float] = field(default_factory=dict)
    report_rss_before_mb: float = 0.0
    report_peak_rss_mb: float = 0.0  # during the download
    report_two_s: list[float] = field(default_factory=list)  # from each of two workers
    report_two_partitions: list[list[int]] = field(default_factory=list)  # what each held
    report_two_rss_mb: list[tuple[float, float]] = field(default_factory=list)  # before, peak
    # forecast and advisor asked of each of the two workers (each gathers from the other)
    report_two_calls_s: list[dict[str, float]] = field(default_factory=list)
    processes: int = 1  # of the worker in the throughput phase
    tenants_phase: TenantsPhase | None = None
    postgres: Baseline | None = None  # the same launches loaded into PostgreSQL
    postgres_note: str = ""  # why there is no baseline

    @property
    def report_rss_growth_mb(self) -> float:
        return self.report_peak_rss_mb - self.report_rss_before_mb

    @property
    def worker_per_s(self) -> float:
        return self.launches / self.worker_s if self.worker_s else 0.0

    @property
    def worker_cpu_us(self) -> float:
        """The worker's CPU a launch, in microseconds (0 when not measured)."""
        return 1e6 * self.worker_cpu_s / self.launches if self.launches else 0.0

    @property
    def worker_main_cpu_us(self) -> float:
        """Its main threads' CPU a launch, in microseconds (0 when not measured)."""
        return 1e6 * self.worker_main_cpu_s / self.launches if self.launches else 0.0

    @property
    def ratio(self) -> float:
        return self.worker_per_s / self.raw_consumer_per_s if self.raw_consumer_per_s else 0.0


# -- the dataset ------------------------------------------------------------------------------


@dataclass
class Expected:
    """What the counts must be, kept incrementally (2M launches do not fit a plain recount)."""

    latest: dict[tuple[str, str, int], datetime] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)  # tenant -> attempts launched

    def add(self, tenant: str, learner: str, launched_at: datetime) -> None:
        """One launch of a new attempt."""
        self.attempts[tenant] = self.attempts.get(tenant, 0) + 1
        key = (tenant, learner, launched_at.year)
        if key not in self.latest or self.latest[key] < launched_at:
            self.latest[key] = launched_at

    def counts(
        self, deleted: tuple[str, datetime] | None = None
    ) -> dict[tuple[str, str], tuple[int, int]]:
        """{(tenant, window start): (active, total)}; the default license cuts calendar years.

        With `deleted` = (tenant, cutoff): as after a physical deletion of that tenant's attempts
        launched before the cutoff.
        """
        active: dict[tuple[str, str], int] = {}
        learners: dict[str, set[str]] = {}
        for (tenant, learner, year), latest in self.latest.items():
            if deleted is not None and tenant == deleted[0] and latest < deleted[1]:
                continue
            window = (tenant, f"{year}-01-01")
            active[window] = active.get(window, 0) + 1
            learners.setdefault(tenant, set()).add(learner)
        return {key: (n, len(learners[key[0]])) for key, n in active.items()}


BIG_TENANT = "bench-big"


def tracked_launch(
    event_id: str, tenant: str, learner: str, element: str, attempt: str, launched_at: datetime
) -> tuple[bytes, bytes]:
    """(key, value) of one tracked (SCORM) launch, keyed as producers are asked to key them."""
    value = {
        "event_id": event_id,
        "tenant_id": tenant,
        "learner_id": learner,
        "element_id": element,
        "attempt_id": attempt,
        "launched_at": launched_at.isoformat(),
        "content_type": "scorm",
    }
    return f"{tenant}/{learner}".encode(), json.dumps(value).encode()


def tracked_launches(
    count: int, tenants: int, seed: int, now: datetime, expected: Expected
) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of `count` tracked launches over 400 days.

    Half of them belong to one big tenant (50,000 learners: the deletion phase erases its
    history); the rest to `tenants` tenants of skewed sizes, with a few heavy learners each.
    """
    rng = random.Random(seed)
    start = now - timedelta(days=400)
    span = int((now - start).total_seconds())
    learners_per_tenant = max(10, count // (tenants * 8))
    for n in range(count):
        if rng.random() < 0.5:
            tenant = BIG_TENANT
            learner = f"l{rng.randrange(50_000):07d}"
        else:
            tenant = f"bench-{int(tenants * rng.random() ** 2):04d}"
            learner = f"l{int(learners_per_tenant * rng.random() ** 2):07d}"
        launched_at = start + timedelta(seconds=rng.randrange(span))
        expected.add(tenant, learner, launched_at)
        yield tracked_launch(f"b{n}", tenant, learner, f"el{n % 300}", f"a{n}", launched_at)


async def produce_fast(
    settings: Settings, topic: str, records: Iterator[tuple[bytes, bytes]]
) -> int:
    """Send (key, value) records in producer batches (kafka-python sends ~25k/s here)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**settings.aiokafka(), acks="all", max_batch_size=1024 * 1024)
    await producer.start()
    try:
        name = settings.topic(topic)
        partitions = sorted(await producer.partitions_for(name))
        batches: dict[int, Any] = {}
        futures = []
        sent = 0
        for key, value in records:
            partition = partitions[crc32(key) % len(partitions)]
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(batch, name, partition=partition))
                batch = batches[partition] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            sent += 1
            if len(futures) > 64:
                await asyncio.gather(*futures)
                futures.clear()
        for partition, batch in batches.items():
            if batch.record_count():
                futures.append(await producer.send_batch(batch, name, partition=partition))
        await asyncio.gather(*futures)
        return sent
    finally:
        await producer.stop()


async def raw_consumer_rate(settings: Settings, expected: int) -> float:
    """A plain aiokafka consumer reading the launches (and decoding each): the ceiling."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        settings.topic(topics.LAUNCHES),
        **settings.aiokafka(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        seen, started = 0, time.monotonic()
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                for record in records:
                    json.loads(record.value)  # a consumer that does nothing is no ceiling
                seen += len(records)
        return seen / (time.monotonic() - started)
    finally:
        await consumer.stop()


# -- worker processes -------------------------------------------------------------------------


def bench_worker(
    settings: Settings, name: str, extra_env: dict[str, str] | None = None, processes: int = 1
) -> WorkerProcess:
    """One worker with its own state folder, its log beside it, its peak RSS sampled (with
    `processes` > 1, of all its processes together)."""
    log_path = settings.state_dir.parent / f"{settings.topic_prefix}{name}.log"
    worker = WorkerProcess(
        settings,
        log_path,
        args=["--loglevel", "info", "--processes", str(processes)],
        extra_env=extra_env,
        web_port=settings.web_port,
        sample_rss=True,
    )
    return worker.start()


def worker_rss(worker: WorkerProcess) -> float:
    return rss_mb(worker.process.pid) if worker.process is not None else 0.0


# faust's log lines begin with their local time: "[2026-12-03 23:59:42,381] [pid] [INFO] ..."
ASSIGNED_LINE = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\] .*"
    r"launch reader: [1-9]\d* partitions of launches assigned",
    re.M,
)


def first_assignment_wall(log_text: str) -> float:
    """The wall time (epoch seconds) of the first launch reader, of any process of the log,
    that was assigned partitions of `launches`: from then on, launches are being counted."""
    match = ASSIGNED_LINE.search(log_text)
    if match is None:
        raise ValueError("no launch reader was assigned partitions of launches")
    local = time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
    return time.mktime(local) + int(match.group(2)) / 1000


def wait_exact(
    settings: Settings,
    expected: dict[tuple[str, str], tuple[int, int]],
    worker: WorkerProcess,
    timeout_s: float,
    on_poll: Callable[[], None] | None = None,
) -> float:
    """Wait until the counts topic equals `expected`; returns the wall time (epoch seconds) of
    the last count record, i.e. when the worker made the counts exact."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker.check_alive()
        if on_poll is not None:
            on_poll()
        if group_lag(settings) == 0:
            live: dict[bytes, Any] = {}
            last_ms = 0
            for key, value, timestamp_ms in records_with_time(settings):
                last_ms = max(last_ms, timestamp_ms)
                if key is not None:
                    live[key] = value
            if counts_exact(live, expected):
                return last_ms / 1000.0
        time.sleep(1.0)
    raise TimeoutError(f"counts not exact after {timeout_s:g}s; see {worker.log_path}")


def counts_exact(
    live: dict[bytes, bytes | None], expected: dict[tuple[str, str], tuple[int, int]]
) -> bool:
    """Whether the latest count records (`live`, by key) show the recount: every window of
    `expected` with its active count, and every other window with none (0 or a tombstone), so
    that a window the recount leaves out (emptied by a deletion, or counted by mistake) is
    checked as well."""
    wanted = {f"{tenant}/{start}".encode(): n for (tenant, start), (n, _) in expected.items()}
    if any(_active(live.get(key)) != n for key, n in wanted.items()):
        return False
    return all(_active(value) in (None, 0) for key, value in live.items() if key not in wanted)


def _active(value: bytes | None) -> int | None:
    return None if value is None else int(json.loads(value)["active_learners"])


def records_with_time(settings: Settings) -> Iterator[tuple[bytes | None, bytes | None, int]]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.kafka_python(), enable_auto_commit=False)
    try:
        name = settings.topic(topics.ACTIVE_LEARNER_COUNTS)
        tps = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    yield record.key, record.value, record.timestamp
    finally:
        consumer.close()


# -- the phases -------------------------------------------------------------------------------


def run_bench(
    settings: Settings,
    launches: int,
    tenants: int,
    log: Log = print,
    skip_recovery: bool = False,
    skip_deletion: bool = False,
    skip_latency: bool = False,
    latency_rate: int = 5_000,
    latency_s: float = 30.0,
    report_learners: int = 0,
    skip_postgres: bool = False,
    processes: int = 1,
    many_tenants: int = 0,
) -> BenchResult:
    """Every phase; `launches` 0 skips throughput, memory, recovery, deletion and the
    PostgreSQL baseline, `report_learners` 0 the report."""
    result = BenchResult(launches=launches, partitions=settings.partitions)
    now = datetime.now(UTC)
    if launches:
        run_throughput(
            settings, launches, tenants, now, result, log, skip_recovery, skip_deletion, processes
        )
        if not skip_postgres:
            run_postgres(launches, tenants, now, result, log)

    if not skip_latency:
        log(f"latency at a steady {latency_rate:,} launches/s for {latency_s:g}s...")
        fresh = replace(
            settings,
            topic_prefix=f"{settings.topic_prefix}latency-",
            state_dir=settings.state_dir.parent / "state-latency",
        )
        ensure_topics(fresh)
        worker = bench_worker(fresh, "latency")
        try:
            worker.wait_ready()
            result.latencies_s, result.latency_to_attempt_s = asyncio.run(
                measure_latency(fresh, latency_rate, latency_s, now)
            )
            result.latency_rate = latency_rate
        finally:
            worker.stop()

    if report_learners:
        run_report(settings, report_learners, result, log)
    if many_tenants:
        result.tenants_phase = run_tenants(settings, many_tenants, TENANT_MONTHS, now, log)
    return result


def run_throughput(
    settings: Settings,
    launches: int,
    tenants: int,
    now: datetime,
    result: BenchResult,
    log: Log,
    skip_recovery: bool,
    skip_deletion: bool,
    processes: int = 1,
) -> None:
    """Phases 1-4: throughput and memory (of `processes` worker processes), then recovery and
    deletion (one)."""
    ensure_topics(settings)
    expected = Expected()
    log(f"producing {launches:,} tracked launches over {tenants} tenants...")
    started = time.monotonic()
    asyncio.run(
        produce_fast(
            settings, topics.LAUNCHES, tracked_launches(launches, tenants, 1, now, expected)
        )
    )
    result.produce_per_s = launches / (time.monotonic() - started)

    log("measuring the raw aiokafka consumer...")
    result.raw_consumer_per_s = asyncio.run(raw_consumer_rate(settings, launches))

    as_processes = f" ({processes} processes)" if processes > 1 else ""
    log(f"one worker{as_processes} counts them until every count is exact...")
    result.processes = processes
    worker = bench_worker(settings, "worker", processes=processes)
    try:
        all_ready_s = worker.wait_ready(processes=processes)
        assert worker.process is not None
        # from the moment the bench sees it ready: what it spent before (start-up, and the few
        # launches counted between its first partitions and that moment) is not counted
        cpu_at_ready = cpu_seconds(worker.process.pid)
        main_cpu_at_ready = main_thread_cpu_seconds(worker.process.pid)
        # the clock starts when the first launch reader had partitions: with several processes,
        # the first one to join reads every partition until the others join
        ready_wall = first_assignment_wall(worker.log_text(since_start=True))
        result.startup_s = all_ready_s - (time.time() - ready_wall)
        curve: list[tuple[int, float]] = []
        rocksdb = result.rocksdb_curve_mb
        last_sample = [0.0]

        def take_sample() -> None:
            curve.append((end_offset(settings, topics.ATTEMPTS), worker_rss(worker)))
            rocksdb.append(memory_breakdown_mb(worker) if processes == 1 else {})

        def sample() -> None:
            if time.monotonic() - last_sample[0] >= 3:
                last_sample[0] = time.monotonic()
                take_sample()

        done_wall = wait_exact(settings, expected.counts(), worker, 3600, on_poll=sample)
        result.worker_s = done_wall - ready_wall
        result.worker_cpu_s = cpu_seconds(worker.process.pid) - cpu_at_ready
        result.worker_main_cpu_s = main_thread_cpu_seconds(worker.process.pid) - main_cpu_at_ready
        take_sample()
        result.rss_curve_mb = curve
        result.peak_rss_mb = worker.peak_rss_mb
    finally:
        worker.stop()

    if not skip_recovery:
        log("a new worker restores the state from the changelogs...")
        restored = replace(settings, state_dir=settings.state_dir.parent / "state-restored")
        worker = bench_worker(restored, "restored")
        try:
            worker.wait_ready()
            records, seconds = restore_figures(worker.log_text())
            result.recovery_records, result.recovery_s = records, seconds
            # the deletion is timed from a worker that has taken every learner partition over:
            # the takeover's rebuild is measured on its own, not inside the deletion's seconds
            wait_for(
                lambda: len(REBUILD_LINE.findall(worker.log_text())) >= restored.partitions,
                300,
                "every learner partition rebuilt",
                0.2,
                TimeoutError,
            )
            result.rebuild_s = sum(
                float(m.group(1)) for m in REBUILD_LINE.finditer(worker.log_text())
            )
            if not skip_deletion:
                run_deletion(restored, worker, expected, result, log)
        finally:
            worker.stop()


def run_postgres(launches: int, tenants: int, now: datetime, result: BenchResult, log: Log) -> None:
    """The same launches (same seed) loaded into PostgreSQL, and the big tenant's count of this
    year's window (the default license cuts calendar years) asked of it."""
    why_not = pg_baseline.available()
    if why_not is not None:
        result.postgres_note = why_not
        log(f"PostgreSQL baseline skipped: {why_not}")
        return
    log(f"PostgreSQL: loading the same {launches:,} launches...")
    window = (f"{now.year}-01-01T00:00:00Z", f"{now.year + 1}-01-01T00:00:00Z")
    same = tracked_launches(launches, tenants, 1, now, Expected())
    result.postgres = pg_baseline.measure(same, BIG_TENANT, window)
    log(result.postgres.line())


def restore_figures(log_text: str) -> tuple[int, float]:
    records, seconds = 0, 0.0
    for match in RESTORE_LINE.finditer(log_text):
        records += int(match.group(1))
        seconds += float(match.group(2))
    return records, seconds


def run_deletion(
    settings: Settings,
    worker: WorkerProcess,
    expected: Expected,
    result: BenchResult,
    log: Log,
) -> None:
    from streams.domain.deletions import build_request
    from streams.domain.selectors import Selector

    cutoff = datetime.now(UTC).replace(microsecond=0)
    log(f"a physical older_than deletion of every attempt of {BIG_TENANT}...")
    worker.peak_rss_mb = 0.0
    request = build_request(
        BIG_TENANT, "physical", Selector.of("older_than", [cutoff.isoformat()]), cutoff
    )
    assert worker.process is not None
    cpu_at_send = cpu_seconds(worker.process.pid)
    main_cpu_at_send = main_thread_cpu_seconds(worker.process.pid)
    sent_wall = time.time()
    produce_records(
        settings,
        [(topics.ATTEMPT_DELETIONS, BIG_TENANT.encode(), json.dumps(request).encode())],
    )
    receipts = wait_receipts(settings, {request["request_id"]}, 900)
    cpu_at_receipt = cpu_seconds(worker.process.pid)  # (0.0 when the worker is gone)
    result.deletion_cpu_s = max(cpu_at_receipt - cpu_at_send, 0.0) if cpu_at_receipt else 0.0
    main_cpu_at_receipt = main_thread_cpu_seconds(worker.process.pid)
    result.deletion_main_cpu_s = (
        max(main_cpu_at_receipt - main_cpu_at_send, 0.0) if main_cpu_at_receipt else 0.0
    )
    # timed to the receipt's own timestamp (the worker's clock when it sent it), not to the
    # moment a poll of the receipts topic happened to see it
    result.deletion_s = max(at_ms for _, at_ms in receipts) / 1000 - sent_wall
    result.deletion_attempts = sum(r["attempts_affected"] for r, _ in receipts)
    # every attempt of the tenant was launched before the cutoff: the receipt's count is checked
    result.deletion_launched = expected.attempts.get(BIG_TENANT, 0)
    result.deletion_peak_rss_mb = worker.peak_rss_mb
    after = expected.counts((BIG_TENANT, cutoff))
    try:
        wait_exact(settings, after, worker, 300)
        result.deletion_exact = True
    except TimeoutError:
        result.deletion_exact = False


def wait_receipts(
    settings: Settings, request_ids: set[str], timeout_s: float
) -> list[tuple[dict, int]]:
    """The receipt of every request, each with its record's timestamp (epoch ms)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = first_receipts(read_records(settings, topics.DELETION_RECEIPTS), request_ids)
        if len(found) == len(request_ids):
            return list(found.values())
        time.sleep(0.5)
    raise TimeoutError(f"not every deletion receipt arrived within {timeout_s:g}s")


def first_receipts(records: Iterable[Any], request_ids: set[str]) -> dict[str, tuple[dict, int]]:
    """request_id -> (receipt, timestamp in epoch ms) of the first receipt of each of
    `request_ids` among kafka records (a redelivered receipt repeats it later)."""
    found: dict[str, tuple[dict, int]] = {}
    for record in records:
        if record.value:
            receipt = json.loads(record.value)
            if receipt["request_id"] in request_ids and receipt["request_id"] not in found:
                found[receipt["request_id"]] = (receipt, record.timestamp)
    return found


async def measure_latency(
    settings: Settings, rate: int, seconds: float, now: datetime
) -> tuple[list[float], list[float]]:
    """Send `rate` launches/s for `seconds`, with a probe launch every 0.1 s: each the first
    launch of a new tenant. A probe's latency: its send to the first count record of its tenant.

    Also each probe's first hop: its send to the timestamp of its attempt record, which the
    learner stage's flush gives it (the launch reader's batch, the command's hop, the learner
    stage's group and its write). Its count follows once the partition's next partial report
    reached the tenant stage and the tenant stage's flush was durable."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(**settings.aiokafka(), linger_ms=5)
    counts_topic = settings.topic(topics.ACTIVE_LEARNER_COUNTS)
    consumer = AIOKafkaConsumer(
        counts_topic,
        settings.topic(topics.ATTEMPTS),
        **settings.aiokafka(),
        auto_offset_reset="latest",
        group_id=None,
    )
    await producer.start()
    await consumer.start()
    sent_at: dict[str, float] = {}
    latencies: dict[str, float] = {}
    attempt_at: dict[str, float] = {}  # probe -> its attempt record's timestamp
    topic = settings.topic(topics.LAUNCHES)
    rng = random.Random(5)

    def launch(tenant: str, learner: str, n: int) -> bytes:
        launched = now - timedelta(seconds=rng.randrange(30 * 86_400))
        return tracked_launch(f"lat{n}", tenant, learner, "e", f"lat{n}", launched)[1]

    async def receive() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            for tp, records in batches.items():
                for record in records:
                    if tp.topic == counts_topic:
                        note_probe(record.value, time.time(), sent_at, latencies)
                    else:
                        note_attempt(record.key, record.timestamp, sent_at, attempt_at)

    receiver = asyncio.ensure_future(receive())
    try:
        await asyncio.sleep(1.0)  # the consumer is positioned at the end
        tick_s, n, probes = 0.1, 0, 0
        per_tick = max(1, int(rate * tick_s))
        started = time.monotonic()
        next_tick = started
        # the first WARMUP_S at the same rate are not measured: a steady state is
        while time.monotonic() - started < seconds + WARMUP_S:
            for _ in range(per_tick - 1):
                tenant = f"steady-{rng.randrange(200):03d}"
                await producer.send(topic, launch(tenant, f"l{rng.randrange(5000)}", n))
                n += 1
            if time.monotonic() - started >= WARMUP_S:
                probe = f"probe-{probes:05d}"
                sent_at[probe] = time.time()
                await producer.send(topic, launch(probe, "p", n), key=probe.encode())
                probes += 1
            n += 1
            next_tick += tick_s
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
        await producer.flush()
        deadline = time.monotonic() + 60
        while len(latencies) < len(sent_at) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        receiver.cancel()
        await producer.stop()
        await consumer.stop()
    # in the order the probes were sent; a probe never counted is infinitely late
    return (
        [latencies.get(probe, float("inf")) for probe in sent_at],
        [attempt_at.get(probe, float("inf")) - sent for probe, sent in sent_at.items()],
    )


def note_attempt(
    key: bytes | None, timestamp_ms: int, sent_at: dict[str, float], attempt_at: dict[str, float]
) -> None:
    """Note when a probe's attempt record was written (its key: tenant/learner/attempt)."""
    tenant = (key or b"").split(b"/", 1)[0].decode(errors="replace")
    if tenant in sent_at and tenant not in attempt_at:
        attempt_at[tenant] = timestamp_ms / 1000


def note_probe(
    value: bytes | None, received_at: float, sent_at: dict[str, float], latencies: dict[str, float]
) -> None:
    """Take a count record as the one that counts a probe when it is the first record of the
    probe's tenant with an active learner (a record of another window of the tenant, with its
    total only, does not count the probe's launch)."""
    if value is None:
        return
    record = json.loads(value)
    tenant = record["tenant_id"]
    if tenant in sent_at and tenant not in latencies and record["active_learners"] >= 1:
        latencies[tenant] = received_at - sent_at[tenant]


# -- many tenants: 24 monthly windows each, exact after a restart and a wiped state ------------

TENANT_MONTHS = 24
TENANT_LEARNERS = 5  # learner ids of each tenant; two of them launch in each month
WindowCounts = dict[tuple[str, str], tuple[int, int]]  # (tenant, window start) -> active, total


@dataclass
class TenantsPhase:
    tenants: int
    windows: int  # tenant windows with learners, every one checked
    launches: int
    exact_s: float = 0.0  # from the worker's start to every count exact
    restart_s: float = 0.0  # same state folder: start to exact again (with a new launch each)
    wiped_s: float = 0.0  # empty state folder: restore, then exact again (another launch each)
    largest: dict[str, int] = field(default_factory=dict)  # topic -> largest record value
    idle_cpu_pct: float = 0.0  # the worker's CPU once exact, with nothing coming in (ticks only)

    def line(self) -> str:
        top, size = max(self.largest.items(), key=lambda item: item[1], default=("-", 0))
        return (
            f"tenants {self.tenants:,} x {TENANT_MONTHS} monthly windows ({self.windows:,} "
            f"counts, {self.launches:,} launches): exact in {self.exact_s:.1f} s, after a restart "
            f"in {self.restart_s:.1f} s, after a wiped state folder in {self.wiped_s:.1f} s; "
            f"largest record {size:,} bytes ({top}); at rest {self.idle_cpu_pct:.1f} % of a core"
        )


def tenant_name(n: int) -> str:
    return f"mt-{n:05d}"


def month_start(now: datetime, back: int) -> datetime:
    """The first instant (UTC) of the month `back` months before `now`'s."""
    index = now.year * 12 + now.month - 1 - back
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def tenants_dataset(
    tenants: int, months: int, now: datetime
) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]], WindowCounts]:
    """Licenses (monthly windows from `months` months ago, UTC) and launches: in each month,
    learners m % 5 and (m + 1) % 5 of each tenant launch once, mid-month."""
    licenses, launches = [], []
    expected: WindowCounts = {}
    first = month_start(now, months)
    for n in range(tenants):
        tenant = tenant_name(n)
        license_ = {
            "tenant_id": tenant,
            "cycle_start": first.date().isoformat(),
            "window_months": 1,
            "timezone": "UTC",
            "learner_limit": 3,
        }
        licenses.append((tenant.encode(), json.dumps(license_).encode()))
        for back in range(months, 0, -1):
            start = month_start(now, back)
            for learner_n in (back % TENANT_LEARNERS, (back + 1) % TENANT_LEARNERS):
                learner = f"l{learner_n}"
                launches.append(
                    tracked_launch(
                        f"{tenant}-{back}-{learner}",
                        tenant,
                        learner,
                        "el",
                        f"a{back}-{learner}",
                        start + timedelta(days=14),
                    )
                )
            expected[(tenant, start.date().isoformat())] = (2, TENANT_LEARNERS)
    return licenses, launches, expected


def one_more_learner(
    tenants: int, learner: str, now: datetime, expected: WindowCounts
) -> list[tuple[bytes, bytes]]:
    """A launch of a new learner in each tenant's current month (its count goes up by one)."""
    start = month_start(now, 0)
    launches = []
    for n in range(tenants):
        tenant = tenant_name(n)
        launched_at = max(start, now - timedelta(minutes=5))
        launches.append(
            tracked_launch(
                f"{tenant}-{learner}", tenant, learner, "el", f"a-{learner}", launched_at
            )
        )
        key = (tenant, start.date().isoformat())
        active, total = expected.get(key, (0, TENANT_LEARNERS))
        expected[key] = (active + 1, total + 1)
    return launches


def run_tenants(
    settings: Settings, tenants: int, months: int, now: datetime, log: Log
) -> TenantsPhase:
    """Phase 7, on its own topics and state folder: exact counts of every tenant window, then
    again after a restart on the same state and after a restart on a wiped state (each time with
    a new learner per tenant counted on top), and the largest record of every topic the
    service writes (all must stay below Kafka's 1 MiB)."""
    fresh = replace(
        settings,
        topic_prefix=f"{settings.topic_prefix}tenants-",
        state_dir=settings.state_dir.parent / "state-tenants",
    )
    ensure_topics(fresh)
    licenses, launches, expected = tenants_dataset(tenants, months, now)
    phase = TenantsPhase(tenants, len(expected), len(launches))
    log(f"tenants: {tenants:,} licenses and {len(launches):,} launches...")
    asyncio.run(produce_fast(fresh, topics.LICENSES, iter(licenses)))
    asyncio.run(produce_fast(fresh, topics.LAUNCHES, iter(launches)))
    timeout_s = 600 + len(launches) / 1000

    emitted: dict[str, int] = {}  # the workers' own largest records (commands are deleted)

    def exact_after_start(name: str, at_rest: bool = False) -> float:
        worker = bench_worker(fresh, name)
        try:
            worker.wait_ready()
            # to the count record that made the counts exact, not to the poll that saw it (a
            # poll reads every count record: seconds, with 240,000 of them)
            elapsed = wait_exact(fresh, expected, worker, timeout_s) - worker.started_wall
            for topic, size in largest_emitted(worker).items():
                emitted[topic] = max(emitted.get(topic, 0), size)
            if at_rest and worker.process is not None:
                phase.idle_cpu_pct = cpu_at_rest(worker.process.pid)
            return elapsed
        finally:
            worker.stop()

    phase.exact_s = exact_after_start("tenants", at_rest=True)
    log(f"tenants: {len(expected):,} counts exact in {phase.exact_s:.1f} s; a restart...")
    asyncio.run(
        produce_fast(fresh, topics.LAUNCHES, iter(one_more_learner(tenants, "r1", now, expected)))
    )
    phase.restart_s = exact_after_start("tenants-restarted")
    log(f"tenants: exact after the restart in {phase.restart_s:.1f} s; a wiped state folder...")
    shutil.rmtree(fresh.state_dir, ignore_errors=True)
    asyncio.run(
        produce_fast(fresh, topics.LAUNCHES, iter(one_more_learner(tenants, "r2", now, expected)))
    )
    phase.wiped_s = exact_after_start("tenants-wiped")
    log(f"tenants: exact after a wiped state folder in {phase.wiped_s:.1f} s; largest records...")
    in_kafka = asyncio.run(largest_records(fresh, WRITTEN_TOPICS))
    phase.largest = {name: max(size, emitted.get(name, 0)) for name, size in in_kafka.items()}
    log(phase.line())
    return phase


AT_REST_S = 31.0  # two ticks of the tenant stage (every 15 s)


def cpu_at_rest(pid: int) -> float:
    """The CPU a worker uses over AT_REST_S with nothing coming in, in % of a core: its timers
    (the tenant stage's ticks) and housekeeping. A measuring window, not a wait for a state."""
    started, cpu = time.monotonic(), cpu_seconds(pid)
    time.sleep(AT_REST_S)
    return 100 * (cpu_seconds(pid) - cpu) / (time.monotonic() - started)


# every topic the service writes (the inputs are the benchmark's)
WRITTEN_TOPICS = tuple(
    spec.name
    for spec in topics.TOPICS
    if spec.name
    not in (topics.LAUNCHES, topics.LICENSES, topics.ATTEMPT_DELETIONS, topics.LEARNER_GROUPS)
)


async def largest_records(settings: Settings, names: tuple[str, ...]) -> dict[str, int]:
    """The largest record value of each topic, read from its start to its end."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from kafka import KafkaConsumer

    lister = KafkaConsumer(**settings.kafka_python())
    try:  # kafka-python fetches the metadata it needs here; aiokafka would need its internals
        parts = [
            TopicPartition(settings.topic(name), p)
            for name in names
            for p in sorted(lister.partitions_for_topic(settings.topic(name)) or ())
        ]
    finally:
        lister.close()
    consumer = AIOKafkaConsumer(
        **settings.aiokafka(), enable_auto_commit=False, group_id=None, fetch_max_bytes=32 << 20
    )
    await consumer.start()
    try:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        remaining = set(parts)
        largest = {name: 0 for name in names}
        by_real = {settings.topic(name): name for name in names}
        deadline = time.monotonic() + 1800
        while remaining and time.monotonic() < deadline:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10_000)
            for tp, records in fetched.items():
                name = by_real[tp.topic]
                for record in records:
                    largest[name] = max(largest[name], len(record.value or b""))
            for tp in list(remaining):  # compacted topics have gaps: the position tells
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        if remaining:
            raise TimeoutError(f"could not read {len(remaining)} partitions to their end")
        return largest
    finally:
        await consumer.stop()


# -- the report phase: a window's learners as CSV ----------------------------------------------

REPORT_TENANT = "bench-report"
CSV_HEADER = b"learner_id,first_attempt_at,last_attempt_at,attempts,teams,roles"


class ReportFailed(RuntimeError):
    """The report phase cannot stand: an answer incomplete or refused, a worker not ready."""


def report_license(now: datetime) -> dict[str, Any]:
    """12-month windows from 60 days ago: the current window started then and runs ten months
    more, so every launch of the last 60 days is in it."""
    return {
        "tenant_id": REPORT_TENANT,
        "cycle_start": (now - timedelta(days=60)).date().isoformat(),
        "window_months": 12,
        "timezone": "UTC",
    }


def report_learner(n: int) -> str:
    return f"r{n:08d}"  # zero-padded: the CSV's order (by learner id) is the order of n


def report_launches(count: int, now: datetime) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of `count` tracked launches of REPORT_TENANT, each by another learner, all
    in the current window of `report_license(now)` and none in the future."""
    start = datetime.combine((now - timedelta(days=60)).date(), datetime.min.time(), UTC)
    first = start + timedelta(hours=1)
    span = int((now - timedelta(minutes=1) - first).total_seconds())
    for n in range(count):
        learner = report_learner(n)
        launched_at = first + timedelta(seconds=(n * 7_919) % span)
        yield tracked_launch(
            f"rep{n}", REPORT_TENANT, learner, f"el{n % 300}", f"ra{n}", launched_at
        )


class CsvTally:
    """What a CSV download must show, kept as it streams by (never the whole body): its lines
    (every row ends with CRLF; our cells hold no line break), its head and its tail."""

    KEEP = 4096

    def __init__(self) -> None:
        self.lines = 0
        self.size = 0
        self.head = b""
        self.tail = b""

    def feed(self, data: bytes) -> None:
        self.lines += data.count(b"\n")
        self.size += len(data)
        if len(self.head) < self.KEEP:
            self.head = (self.head + data)[: self.KEEP]
        self.tail = (self.tail + data)[-self.KEEP :]

    @property
    def rows(self) -> int:
        return max(0, self.lines - 1)  # the header line is no row

    def first_learner(self) -> str | None:
        lines = self.head.split(b"\r\n")
        return _first_cell(lines[1]) if len(lines) > 2 else None

    def last_learner(self) -> str | None:
        lines = self.tail.split(b"\r\n")
        return _first_cell(lines[-2]) if len(lines) > 2 and lines[-1] == b"" else None

    def problems(self, learners: int) -> list[str]:
        """Why this is not the complete CSV of learners r00000000.. (empty when it is)."""
        found = []
        header = self.head.split(b"\r\n", 1)[0]
        if header != CSV_HEADER:
            found.append(f"header {header[:120]!r}")
        if self.rows != learners:
            found.append(f"{self.rows:,} rows instead of {learners:,}")
        if not self.tail.endswith(b"\r\n"):
            found.append(f"does not end with a complete line: ...{self.tail[-80:]!r}")
        if learners and self.first_learner() != report_learner(0):
            found.append(f"first learner {self.first_learner()!r}")
        if learners and self.last_learner() != report_learner(learners - 1):
            found.append(f"last learner {self.last_learner()!r}")
        return found


def _first_cell(line: bytes) -> str | None:
    cells = next(csv.reader([line.decode(errors="replace")]), [])
    return cells[0] if cells else None


@dataclass
class Download:
    status: int
    seconds: float = 0.0
    first_byte_s: float = 0.0
    rss_before_mb: float = 0.0
    peak_rss_mb: float = 0.0
    tally: CsvTally = field(default_factory=CsvTally)
    error: str = ""


def http_get(port: int, path: str, token: str, timeout_s: float = 30.0) -> tuple[int, Any]:
    """A small JSON answer of a worker: (status, decoded body or None)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        body = response.read()
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, None
    finally:
        connection.close()


def download_csv(
    worker: WorkerProcess, path: str, token: str, chunk_bytes: int = 1 << 20
) -> Download:
    """GET `path` from the worker, read in chunks of `chunk_bytes` and tallied as it comes,
    timed from the request to the last byte; the worker's RSS sampled all along (by its
    sampling thread every 0.25 s and here at every chunk)."""
    assert worker.process is not None
    pid = worker.process.pid
    before = worker.peak_rss_mb = rss_mb(pid)
    connection = http.client.HTTPConnection("127.0.0.1", worker.web_port, timeout=600)
    try:
        started = time.monotonic()
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        download = Download(status=response.status, rss_before_mb=before)
        if response.status != 200:
            download.error = response.read(300).decode(errors="replace").strip()
            return download
        peak = before
        while True:
            data = response.read1(chunk_bytes)
            if not data:
                break
            if not download.tally.size:
                download.first_byte_s = time.monotonic() - started
            download.tally.feed(data)
            peak = max(peak, rss_mb(pid))
        download.seconds = time.monotonic() - started
        download.peak_rss_mb = max(peak, worker.peak_rss_mb)
        return download
    finally:
        connection.close()


def complete_download(
    worker: WorkerProcess, path: str, token: str, learners: int, log: Log, retry_s: float = 60.0
) -> Download:
    """The CSV from `worker`, which must hold every row; a refusal before the first byte (503:
    a partition between two workers) is asked again for up to `retry_s`, anything else fails
    the phase."""
    deadline = time.monotonic() + retry_s
    while True:
        worker.check_alive()
        download = download_csv(worker, path, token)
        if download.status == 503 and time.monotonic() < deadline:
            log(f"  {worker.name} answered 503 ({download.error[:120]}); asking again")
            time.sleep(2.0)
            continue
        if download.status != 200:
            raise ReportFailed(
                f"{worker.name} answered {download.status} for {path}: {download.error[:300]}"
            )
        problems = download.tally.problems(learners)
        if problems:
            raise ReportFailed(
                f"{worker.name}'s CSV is incomplete: {'; '.join(problems)} "
                f"({download.tally.size:,} bytes in {download.seconds:.1f} s); see "
                f"{worker.log_path}"
            )
        return download


def wait_counted(worker: WorkerProcess, token: str, learners: int, timeout_s: float) -> str:
    """Until the worker's API counts `learners` in the tenant's current window; returns the
    window's start (YYYY-MM-DD)."""

    def counted() -> str:
        worker.check_alive()
        try:
            status, body = http_get(worker.web_port, f"/api/tenants/{REPORT_TENANT}", token)
        except OSError:
            return ""
        if status == 200 and body["active_learners"] == learners:
            return str(body["window"]["start"])
        return ""  # not yet

    return wait_for(counted, timeout_s, f"{learners:,} learners counted", 1.0, TimeoutError)


def wait_both_ready(
    workers: list[WorkerProcess], token: str, partitions: int, timeout_s: float
) -> list[list[int]]:
    """Until `GET /ready` answers 200 on every worker, each holds learner partitions and
    together they hold each partition once; returns the partitions each holds."""

    def ready() -> list[list[int]]:
        held = []
        for worker in workers:
            worker.check_alive()
            try:
                status, body = http_get(worker.web_port, "/ready", token)
            except OSError:
                return []
            if status != 200 or not body or not body.get("learner_partitions"):
                return []
            held.append(sorted(body["learner_partitions"]))
        together = sorted(p for part in held for p in part)
        return held if together == list(range(partitions)) else []  # [] is not yet

    return wait_for(ready, timeout_s, "both workers ready", 1.0, TimeoutError)


def run_report(settings: Settings, learners: int, result: BenchResult, log: Log) -> None:
    """Phase 6, on its own topics (under the run's prefix) and state folders."""
    now = datetime.now(UTC)
    fresh = replace(
        settings,
        topic_prefix=f"{settings.topic_prefix}report-",
        state_dir=settings.state_dir.parent / "state-report",
    )
    ensure_topics(fresh)
    license_ = report_license(now)
    produce_records(
        fresh, [(topics.LICENSES, REPORT_TENANT.encode(), json.dumps(license_).encode())]
    )
    log(f"report: producing {learners:,} launches of {learners:,} learners of {REPORT_TENANT}...")
    asyncio.run(produce_fast(fresh, topics.LAUNCHES, report_launches(learners, now)))

    token = secrets.token_hex(24)  # 48 characters; the workers take it as an admin token
    env = {"API_ADMIN_TOKENS": f"bench:{token}"}
    workers = [bench_worker(fresh, "worker", env)]
    try:
        worker = workers[0]
        worker.wait_ready()
        log("report: one worker counts them...")
        start = wait_counted(worker, token, learners, 600 + learners / 500)
        result.report_count_s = time.monotonic() - worker.started
        path = f"/api/tenants/{REPORT_TENANT}/windows/{start}/learners?format=csv"
        log(f"report: downloading {path} from the worker holding every partition...")
        time.sleep(2.0)  # the last flush's memory settles before "before" is read
        one = complete_download(worker, path, token, learners, log)
        result.report_learners = learners
        result.report_rss_before_mb = one.rss_before_mb
        result.report_s = one.seconds
        result.report_first_byte_s = one.first_byte_s
        result.report_peak_rss_mb = one.peak_rss_mb
        log(
            f"report: {one.tally.rows:,} rows ({one.tally.size / 1e6:,.1f} MB) in "
            f"{one.seconds:.1f} s, RSS {result.report_rss_before_mb:,.0f} -> "
            f"{one.peak_rss_mb:,.0f} MB"
        )

        for call in ("forecast", "advisor", f"windows/{start}/groups"):
            result.report_calls_s[call.split("/")[-1]] = timed_call(
                worker, f"/api/tenants/{REPORT_TENANT}/{call}", token
            )
        log("report: " + _calls(result.report_calls_s))

        log("report: a second worker joins; waiting until both are ready...")
        second = replace(
            fresh, state_dir=settings.state_dir.parent / "state-report-2", web_port=free_port()
        )
        workers.append(bench_worker(second, "worker-2", env))
        held = wait_both_ready(workers, token, settings.partitions, 600)
        result.report_two_partitions = held
        log(f"report: learner partitions {held[0]} and {held[1]}; downloading from each...")
        for each in workers:
            download = complete_download(each, path, token, learners, log)
            result.report_two_s.append(download.seconds)
            result.report_two_rss_mb.append((download.rss_before_mb, download.peak_rss_mb))
            log(f"report: {each.name}: {download.tally.rows:,} rows in {download.seconds:.1f} s")
        for each in workers:
            calls = {
                call: timed_call(each, f"/api/tenants/{REPORT_TENANT}/{call}", token)
                for call in ("forecast", "advisor")
            }
            result.report_two_calls_s.append(calls)
            log(f"report: {each.name}: " + _calls(calls))
    finally:
        for each in workers:
            each.stop()


# -- the report -------------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile: the smallest value with at least `pct` % of the values at or
    below it (p99 of 299 probes is the 297th, never the 296th)."""
    if not values:
        return float("nan")
    rank = math.ceil(round(pct * len(values), 6) / 100)  # (rounded: 0.99 * 300 is not 297.0)
    return sorted(values)[min(len(values), max(1, rank)) - 1]


def report(result: BenchResult) -> str:
    lines = []
    if result.launches:
        lines += [
            f"launches                 {result.launches:,} (all tracked), "
            f"{result.partitions} partitions",
            f"produce (aiokafka)       {result.produce_per_s:,.0f}/s",
            f"raw aiokafka consumer    {result.raw_consumer_per_s:,.0f}/s (reads + json.loads)",
            f"worker start-up          {result.startup_s:.1f} s (not counted below)",
            f"worker end to end {result.worker_per_s:,.0f}/s "
            + (f"with {result.processes} processes " if result.processes > 1 else "")
            + f"({result.worker_s:.1f} s from the first launch reader's partitions to every "
            "count exact)",
            f"worker / raw consumer {100 * result.ratio:.1f} %",
        ]
        if result.worker_cpu_s:
            lines.append(
                f"worker CPU               {result.worker_cpu_us:.1f} us a launch "
                f"({result.worker_cpu_s:.1f} s of its threads and processes over the count)"
                + (
                    f", of which its main threads {result.worker_main_cpu_us:.1f} us"
                    if result.worker_main_cpu_s
                    else ""
                )
            )
        lines += [
            f"worker peak RSS          {result.peak_rss_mb:,.0f} MB",
        ]
        if result.postgres is not None:
            lines.append(result.postgres.line())
            lines.append(
                f"worker / PostgreSQL      {result.worker_per_s / result.postgres.per_s:.2f}x"
            )
        elif result.postgres_note:
            lines.append(f"PostgreSQL baseline skipped: {result.postgres_note}")
    if result.recovery_records:
        rate = result.recovery_records / result.recovery_s if result.recovery_s else 0.0
        lines.append(
            f"recovery {rate:,.0f} records/s "
            f"({result.recovery_records:,} changelog records in {result.recovery_s:.1f} s), "
            f"then the takeover's rebuild of counts and report tallies {result.rebuild_s:.1f} s"
        )
    if result.deletion_attempts:
        rate = result.deletion_attempts / result.deletion_s
        exact = {True: "counts exact after", False: "COUNTS WRONG after", None: ""}
        launched = result.deletion_launched
        differs = (
            f"; THE RECEIPT SAYS {result.deletion_attempts:,}, {launched:,} were launched"
            if launched and launched != result.deletion_attempts
            else ""
        )
        cpu = (
            f"; worker CPU {1e6 * result.deletion_cpu_s / result.deletion_attempts:.1f} us an "
            "attempt"
            + (
                f" (its main threads "
                f"{1e6 * result.deletion_main_cpu_s / result.deletion_attempts:.1f} us)"
                if result.deletion_main_cpu_s
                else ""
            )
            + f", {result.deletion_cpu_s:.1f} s to the receipt read"
            if result.deletion_cpu_s
            else ""
        )
        lines.append(
            f"deletion {rate:,.0f} attempts/s, peak RSS {result.deletion_peak_rss_mb:,.0f} MB "
            f"({result.deletion_attempts:,} attempts in {result.deletion_s:.1f} s; "
            f"{exact[result.deletion_exact]}{differs}{cpu})"
        )
    if result.latencies_s:
        lost = sum(1 for v in result.latencies_s if v == float("inf"))
        lines.append(
            f"latency p50 {percentile(result.latencies_s, 50):.2f} s, "
            f"p99 {percentile(result.latencies_s, 99):.2f} s "
            f"({len(result.latencies_s)} probes at {result.latency_rate:,} launches/s"
            + (f", {lost} never counted" if lost else "")
            + ")"
        )
    if result.latency_to_attempt_s:
        lines.append(latency_hops_line(result.latencies_s, result.latency_to_attempt_s))
    if result.report_learners:
        lines.append(report_line(result))
    if result.tenants_phase is not None:
        lines.append(result.tenants_phase.line())
    return "\n".join(lines)


def latency_hops_line(latencies_s: list[float], to_attempt_s: list[float]) -> str:
    """Where the probes' latency went: their send to their attempt record (the launch reader,
    the command's hop and the learner stage), and from there to the count record (the wait for
    the partition's partial report, and the tenant stage). Per probe, so the two hops' p99 need
    not add up to the whole's."""
    pairs = [
        (first, whole - first)
        for whole, first in zip(latencies_s, to_attempt_s, strict=True)
        if math.isfinite(whole) and math.isfinite(first)
    ]
    if not pairs:
        return "latency by hop: no probe's attempt record was seen"
    firsts, rests = [first for first, _ in pairs], [rest for _, rest in pairs]
    return (
        f"latency by hop: launch -> attempt record p50 {percentile(firsts, 50):.2f} s, "
        f"p99 {percentile(firsts, 99):.2f} s; attempt record -> count record (the partial "
        f"report's wait, the tenant stage) p50 {percentile(rests, 50):.2f} s, "
        f"p99 {percentile(rests, 99):.2f} s ({len(pairs)} probes)"
    )


def report_line(result: BenchResult) -> str:
    """`report 1,000,000 rows in 8.4 s (119,000 rows/s), worker RSS +42 MB (peak 512 MB); two
    workers: 9.1 s / 9.3 s`"""
    rows = result.report_learners
    rate = rows / result.report_s if result.report_s else 0.0
    line = (
        f"report {rows:,} rows in {result.report_s:.1f} s ({rate:,.0f} rows/s), "
        f"worker RSS {result.report_rss_growth_mb:+,.0f} MB "
        f"(peak {result.report_peak_rss_mb:,.0f} MB)"
    )
    if result.report_two_s:
        line += "; two workers: " + " / ".join(f"{s:.1f} s" for s in result.report_two_s)
    if result.report_calls_s:
        line += "; " + _calls(result.report_calls_s)
    for n, calls in enumerate(result.report_two_calls_s):
        line += f"; worker {n + 1} of two: " + _calls(calls)
    return line


def _calls(calls: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.2f} s" for name, seconds in calls.items())


def timed_call(worker: WorkerProcess, path: str, token: str) -> float:
    """Seconds of one GET of the worker's API (its answer read whole; a failure raises)."""
    request = urllib.request.Request(f"http://127.0.0.1:{worker.web_port}{path}")
    request.add_header("Authorization", f"Bearer {token}")
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=600) as answer:
        answer.read()
    return time.monotonic() - started


ROCKSDB_KINDS = ("memtables", "table_readers", "block_cache")
ROCKSDB_METRIC = re.compile(
    r'^active_learners_rocksdb_memory_bytes\{kind="(\w+)",table="[^"]*"\} (\S+)$', re.M
)
MALLOC_FREE = re.compile(r'^active_learners_malloc_bytes\{kind="free"\} (\S+)$', re.M)
PYTHON_BLOCKS = re.compile(r"^active_learners_python_allocated_blocks (\S+)$", re.M)


LARGEST_METRIC = re.compile(
    r'^active_learners_largest_record_bytes\{topic="([^"]+)"\} (\S+)$', re.M
)


def largest_emitted(worker: WorkerProcess) -> dict[str, int]:
    """The largest record the worker emitted to each topic (its /metrics); {} when it does not
    answer. The command topics need it: the worker deletes their records once consumed."""
    text = metrics_text(worker)
    return {topic: int(float(size)) for topic, size in LARGEST_METRIC.findall(text)}


def metrics_text(worker: WorkerProcess) -> str:
    """The worker's /metrics ("" when it does not answer)."""
    request = urllib.request.Request(f"http://127.0.0.1:{worker.web_port}/metrics")
    token = worker.extra_env.get("METRICS_TOKEN") or os.environ.get("METRICS_TOKEN", "")
    if token.strip():
        request.add_header("Authorization", f"Bearer {token.strip()}")
    try:
        with urllib.request.urlopen(request, timeout=2) as answer:
            return str(answer.read().decode())
    except (OSError, http.client.HTTPException):
        return ""


def memory_breakdown_mb(worker: WorkerProcess) -> dict[str, float]:
    """Where the worker's memory is (memory_sizes), from its /metrics; {} when it does not
    answer (the sample is then shown without it)."""
    text = metrics_text(worker)
    return memory_sizes(text) if text else {}


def memory_sizes(metrics_text: str) -> dict[str, float]:
    """From a /metrics text: RocksDB's MB by kind (every table summed), malloc's free MB
    (`malloc_free`) and Python's allocated blocks in thousands (`python_kblocks`)."""
    sizes: dict[str, float] = {}
    for kind, value in ROCKSDB_METRIC.findall(metrics_text):
        sizes[kind] = sizes.get(kind, 0.0) + float(value) / (1 << 20)
    if free := MALLOC_FREE.search(metrics_text):
        sizes["malloc_free"] = float(free[1]) / (1 << 20)
    if blocks := PYTHON_BLOCKS.search(metrics_text):
        sizes["python_kblocks"] = float(blocks[1]) / 1000
    return sizes


def rss_table(result: BenchResult) -> str:
    curve = result.rss_curve_mb
    rocksdb = result.rocksdb_curve_mb if len(result.rocksdb_curve_mb) == len(curve) else []
    indexes = list(range(0, len(curve), max(1, len(curve) // 10)))
    if curve and indexes[-1] != len(curve) - 1:
        indexes.append(len(curve) - 1)
    if not any(rocksdb):
        rows = ["| attempts stored so far | worker RSS (MB) |", "|---:|---:|"]
        for n in indexes:
            counted, rss = curve[n]
            rows.append(f"| {counted:,} | {rss:,.0f} |")
        return "\n".join(rows)
    rows = [
        "| attempts stored so far | worker RSS (MB) | RocksDB memtables | SST index and filters "
        "| block caches | malloc: freed, kept | RSS without these four | Python blocks (k) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in indexes:
        counted, rss = curve[n]
        sizes = rocksdb[n]
        if not sizes:
            rows.append(f"| {counted:,} | {rss:,.0f} | | | | | | |")
            continue
        parts = [sizes.get(kind, 0.0) for kind in (*ROCKSDB_KINDS, "malloc_free")]
        cells = " | ".join(f"{part:,.1f}" for part in parts)
        blocks = sizes.get("python_kblocks", 0.0)
        rows.append(
            f"| {counted:,} | {rss:,.0f} | {cells} | {rss - sum(parts):,.0f} | {blocks:,.0f} |"
        )
    return "\n".join(rows)


def report_table(result: BenchResult) -> str:
    """The report phase as a markdown table (what `bench --write` adds to the results)."""
    rows = result.report_learners

    def rate(seconds: float) -> str:
        return f"{rows / seconds:,.0f}" if seconds else "-"

    def rss(before: float, peak: float) -> str:
        return f"{before:,.0f} before, peak {peak:,.0f} ({peak - before:+,.0f})"

    lines = [
        f"CSV of a window's {rows:,} counted learners (one tenant, {result.partitions} learner "
        f"partitions; counted {result.report_count_s:.1f} s after the worker started):",
        "",
        "| answered by | seconds | rows/s | answering worker's RSS (MB) |",
        "|---|---:|---:|---|",
        f"| one worker, every learner partition (first byte after "
        f"{result.report_first_byte_s:.2f} s) | {result.report_s:.1f} | {rate(result.report_s)} | "
        f"{rss(result.report_rss_before_mb, result.report_peak_rss_mb)} |",
    ]
    for n, seconds in enumerate(result.report_two_s):
        held = result.report_two_partitions[n] if n < len(result.report_two_partitions) else []
        memory = rss(*result.report_two_rss_mb[n]) if n < len(result.report_two_rss_mb) else ""
        lines.append(
            f"| worker {n + 1} of two (holds partitions {', '.join(map(str, held))}) | "
            f"{seconds:.1f} | {rate(seconds)} | {memory} |"
        )
    if result.report_calls_s:
        calls = _calls(result.report_calls_s)
        lines += ["", f"On the same tenant ({rows:,} attempts), one call each: {calls}."]
    for n, each in enumerate(result.report_two_calls_s):
        lines.append(
            f"Asked of worker {n + 1} of two (half the partitions remote): {_calls(each)}."
        )
    return "\n".join(lines)
