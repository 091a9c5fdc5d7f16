"""`active-learners bench`: end-to-end throughput of one worker against the raw consumer ceiling.

1. Produce N tracked launches (many tenants, skewed learners) to a fresh topic prefix.
2. Read them back with a plain aiokafka consumer: the ceiling for a Python consumer here.
3. Start one worker and time it until every count equals an independent recount.
4. Sample the worker's RSS while it runs; report peak and the curve as attempts grow.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from streams import topics
from streams.config import Settings
from streams.domain.recount import recount
from streams.kafka_admin import ensure_topics
from streams.kafka_io import current_counts, key_of, produce_records
from streams.settle import end_offset, group_lag


@dataclass
class BenchResult:
    launches: int
    partitions: int
    produce_s: float
    raw_consumer_per_s: float
    worker_s: float
    worker_per_s: float
    peak_rss_mb: float
    rss_curve_mb: list[tuple[int, float]] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.worker_per_s / self.raw_consumer_per_s


def tracked_launches(count: int, tenants: int, seed: int, now: datetime) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    start = now - timedelta(days=400)
    span = int((now - start).total_seconds())
    learners_per_tenant = max(10, count // (tenants * 4))
    out = []
    for n in range(count):
        tenant = int(tenants * rng.random() ** 2)  # a few big tenants
        learner = int(learners_per_tenant * rng.random() ** 2)  # a few heavy learners
        out.append(
            {
                "event_id": f"b{n}",
                "tenant_id": f"bench-{tenant:04d}",
                "learner_id": f"l{learner:07d}",
                "element_id": f"el{n % 300}",
                "attempt_id": f"a{n}",
                "launched_at": (start + timedelta(seconds=rng.randrange(span))).isoformat(),
                "content_type": "scorm",
            }
        )
    return out


async def raw_consumer_rate(settings: Settings, expected: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        settings.topic(topics.LAUNCHES),
        bootstrap_servers=settings.bootstrap_servers,
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
                seen += sum(len(records) for records in batches.values())
        return seen / (time.monotonic() - started)
    finally:
        await consumer.stop()


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_bench(settings: Settings, launches: int, tenants: int, log: Any = print) -> BenchResult:
    now = datetime.now(UTC)
    ensure_topics(settings)
    records = tracked_launches(launches, tenants, seed=1, now=now)
    log(f"producing {launches:,} tracked launches over {tenants} tenants...")
    started = time.monotonic()
    produce_records(
        settings,
        ((topics.LAUNCHES, key_of(topics.LAUNCHES, r), json.dumps(r).encode()) for r in records),
    )
    produce_s = time.monotonic() - started

    log("measuring the raw aiokafka consumer...")
    raw_rate = asyncio.run(raw_consumer_rate(settings, launches))

    expected = recount(records, {}, now)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "TOPIC_PREFIX": settings.topic_prefix,
        "STATE_DIR": str(settings.state_dir),
        "PARTITIONS": str(settings.partitions),
        "WEB_PORT": str(settings.web_port),
    }
    log_path = settings.state_dir.parent / f"{settings.topic_prefix}worker.log"
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    log(f"running one worker until every count is exact (log: {log_path})...")
    with open(log_path, "wb") as worker_log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker", "--loglevel", "warn"],
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
    peak = [0.0]
    curve: list[tuple[int, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(worker.pid))
            done.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        # Cheap progress probes (end offsets, group lag); the counts topic is read only once
        # nothing is left to process, so the probe does not slow down what it measures.
        while True:
            time.sleep(3)
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}; see {log_path}")
            curve.append((end_offset(settings, topics.ATTEMPTS), rss_mb(worker.pid)))
            if group_lag(settings) > 0:
                continue
            live = current_counts(settings, timeout_s=120)
            if all(
                live.get(key, {}).get("active_learners") == active
                for key, (active, _) in expected.items()
            ):
                break
        worker_s = time.monotonic() - started
    finally:
        done.set()
        worker.terminate()
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
    return BenchResult(
        launches=launches,
        partitions=settings.partitions,
        produce_s=produce_s,
        raw_consumer_per_s=raw_rate,
        worker_s=worker_s,
        worker_per_s=launches / worker_s,
        peak_rss_mb=peak[0],
        rss_curve_mb=curve,
    )


def report(result: BenchResult) -> str:
    target = (
        "met"
        if result.worker_per_s >= 10_000
        else (f"missed: {10_000 / result.worker_per_s:.1f}x short of 10,000/s")
    )
    lines = [
        f"launches                 {result.launches:,} (all tracked), "
        f"{result.partitions} partitions",
        f"produce (kafka-python)   {result.launches / result.produce_s:,.0f}/s",
        f"raw aiokafka consumer    {result.raw_consumer_per_s:,.0f}/s (reads + json.loads)",
        f"worker end to end        {result.worker_per_s:,.0f}/s "
        f"({result.worker_s:.1f}s until every count was exact, start-up included) "
        f"- target {target}",
        f"worker / raw consumer    {100 * result.ratio:.1f} %",
        f"worker peak RSS          {result.peak_rss_mb:,.0f} MB",
    ]
    return "\n".join(lines)


def rss_table(result: BenchResult) -> str:
    rows = ["| attempts stored so far | worker RSS (MB) |", "|---:|---:|"]
    step = max(1, len(result.rss_curve_mb) // 8)
    for counted, rss in result.rss_curve_mb[::step] + result.rss_curve_mb[-1:]:
        rows.append(f"| {counted:,} | {rss:,.0f} |")
    return "\n".join(rows)
