"""The counting pipeline on a real broker and real RocksDB, checked by an independent recount."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from schemas import topics
from streams.config.settings import Settings
from streams.domain.recount import recount
from streams.domain.tracking import is_tracked
from streams.domain.windows import Cut, local_midnight
from streams.kafka.admin import admin_client, ensure_topics, topic_config
from streams.kafka.io import (
    current_counts,
    key_of,
    latest_by_key,
    produce_records,
    read_topic,
    topic_of,
)
from streams.tools.dataset import DatasetSpec, generate
from tests.integration.harness import WorkerProcess, produce_json, wait_for

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


def split(records: list[dict[str, Any]]) -> tuple[list[dict], dict[str, dict]]:
    launches = [r for r in records if "event_id" in r]
    licenses: dict[str, dict] = {}
    for record in records:
        if "cycle_start" in record:
            licenses[record["tenant_id"]] = record
    return launches, licenses


def counts_match(settings: Settings, expected: dict[tuple[str, str], tuple[int, int]]):
    """The condition a test waits for: live counts equal the recount (None while they differ)."""

    def check() -> dict | None:
        live = current_counts(settings)
        active = {key: record["active_learners"] for key, record in live.items()}
        wanted = {key: value[0] for key, value in expected.items()}
        # windows without learners may have a 0 record (the current window); nothing else
        extra = {k: v for k, v in active.items() if k not in wanted and v != 0}
        if any(active.get(key) != value for key, value in wanted.items()) or extra:
            return None
        totals = {tenant: total for (tenant, _), (_, total) in expected.items()}
        for tenant, total in totals.items():
            current = max((k for k in live if k[0] == tenant), key=lambda k: k[1])
            if live[current]["total_learners"] != total:
                return None
        return live

    return check


def counts_gone(settings: Settings):
    """The condition a test waits for: no count record left (unlicensed tenants whose every
    attempt a deletion removed are no tenants: each of their records is tombstoned)."""

    def check() -> bool:
        return current_counts(settings) == {}

    return check


def produce_in_order(settings: Settings, records: list[dict[str, Any]]) -> None:
    """Each record to its topic (launches, licenses, learner-groups), in the order given."""
    produce_records(
        settings,
        ((topic_of(r), key_of(topic_of(r), r), json.dumps(r).encode()) for r in records),
    )


def boundary_launches(tenant: str, cut: Cut) -> list[dict[str, Any]]:
    """Launches exactly at a window start and one microsecond before it, in the tenant's zone."""
    start = local_midnight(date(2026, 2, 28), cut.timezone)
    launches = []
    for n, instant in enumerate([start, start - timedelta(microseconds=1)]):
        launches.append(
            {
                "event_id": f"{tenant}-edge-{n}",
                "tenant_id": tenant,
                "learner_id": f"edge-learner-{n}",
                "element_id": "edge",
                "attempt_id": "edge-attempt",
                "launched_at": instant.isoformat(),
                "content_type": "scorm",
            }
        )
    return launches


def test_live_counts_equal_the_recount(settings: Settings, worker: WorkerProcess) -> None:
    records = list(generate(DatasetSpec(launches=4000, tenants=6, seed=11, now=NOW)))
    edge_license = {
        "tenant_id": "edge-tenant",
        "cycle_start": "2026-01-31",
        "window_months": 1,
        "timezone": "Europe/Berlin",
        "learner_limit": 10,
    }
    edges = boundary_launches("edge-tenant", Cut(date(2026, 1, 31), 1, "Europe/Berlin"))
    # The edge tenant's license arrives after its launches: its windows are re-cut.
    records = records + edges + [edge_license]
    launches, licenses = split(records)
    worker.start()
    # in generated order: licenses first but for the late ones, which follow their launches
    produce_in_order(settings, records)

    expected = recount(launches, licenses, NOW)
    live = wait_for(counts_match(settings, expected), 240, "live counts equal to the recount")

    # the two boundary launches fall in two different windows: Feb 28 and Jan 31 (Berlin)
    assert live[("edge-tenant", "2026-02-28")]["active_learners"] == 1
    assert live[("edge-tenant", "2026-01-31")]["active_learners"] == 1
    assert live[("edge-tenant", "2026-02-28")]["licensed"] is True
    # records of the default cut (calendar years) were tombstoned by the re-cut
    assert ("edge-tenant", "2026-01-01") not in live
    unlicensed = [r for r in live.values() if r["tenant_id"] == "tenant-005"]
    assert unlicensed and all(r["licensed"] is False for r in unlicensed)
    assert all(r["learner_limit"] is None for r in unlicensed)
    assert worker.alive(), worker.log_tail()


def test_commands_the_stages_committed_are_deleted_and_no_others(
    settings: Settings, worker: WorkerProcess
) -> None:
    """The stages' command topics never expire by age (a stage stopped for a week would lose
    them); the worker deletes what the app has committed (streams/worker/agents/purge.py)."""
    records = list(generate(DatasetSpec(launches=1500, tenants=3, seed=5, now=NOW)))
    launches, licenses = split(records)
    worker.start()
    produce_in_order(settings, records)
    wait_for(counts_match(settings, recount(launches, licenses, NOW)), 180, "the counts")

    consumer = KafkaConsumer(**settings.kafka_python())
    admin = admin_client(settings)
    try:
        tps = [
            TopicPartition(settings.topic(name), partition)
            for name in (topics.LEARNER_COMMANDS, topics.TENANT_COMMANDS)
            for partition in range(settings.partitions)
        ]

        def purged() -> dict | None:
            starts = consumer.beginning_offsets(tps)
            committed = admin.list_group_offsets(settings.app_id).get(settings.app_id, {})
            for tp in tps:  # what is deleted was committed first: read in that order
                done = committed[tp].offset if tp in committed else 0
                assert starts[tp] <= done, (tp, starts[tp], done)
            ends = consumer.end_offsets(tps)
            written = [tp for tp in tps if ends[tp] > 0]
            return starts if written and all(starts[tp] > 0 for tp in written) else None

        wait_for(purged, 90, "the committed commands deleted")
    finally:
        consumer.close()
        admin.close()
    for name in (topics.LEARNER_COMMANDS, topics.TENANT_COMMANDS):
        assert topic_config(settings, settings.topic(name), "retention.ms") == "-1"
    assert worker.alive(), worker.log_tail()


def test_launches_kafka_deleted_before_they_were_read_are_reported(
    settings: Settings, worker: WorkerProcess
) -> None:
    """Launches the topic's retention removed while the workers were stopped cannot be
    counted; the worker says how many, where, instead of starting after them without a word.
    (Kafka's DeleteRecords stands in for the retention here: the consumer sees the same.)"""
    from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
    from aiokafka.structs import TopicPartition as AioTopicPartition

    def launches(names: range) -> list[dict[str, Any]]:
        at = (NOW - timedelta(hours=1)).isoformat()
        return [
            {
                "event_id": f"e{n}",
                "tenant_id": "t",
                "learner_id": f"l{n}",
                "element_id": "x",
                "attempt_id": "a",
                "launched_at": at,
                "content_type": "scorm",
            }
            for n in names
        ]

    worker.start()
    produce_in_order(settings, launches(range(40)))
    wait_for(
        lambda: [r for r in current_counts(settings).values() if r["total_learners"] == 40],
        120,
        "the first 40 launches counted",
    )
    worker.stop()
    produce_in_order(settings, launches(range(40, 65)))

    async def expire_all() -> None:
        admin = AIOKafkaAdminClient(**settings.aiokafka())
        await admin.start()
        try:
            consumer = KafkaConsumer(**settings.kafka_python())
            tps = [
                TopicPartition(settings.topic(topics.LAUNCHES), p)
                for p in range(settings.partitions)
            ]
            ends = consumer.end_offsets(tps)
            consumer.close()
            await admin.delete_records(
                {AioTopicPartition(tp.topic, tp.partition): RecordsToDelete(ends[tp]) for tp in tps}
            )
        finally:
            await admin.close()

    asyncio.run(expire_all())
    worker.start()

    def reported() -> int | None:
        lines = [
            line
            for line in worker.log_text(since_start=True).splitlines()
            if "were deleted by Kafka" in line
        ]
        lost = sum(int(line.split("launch reader: ")[1].split()[0]) for line in lines)
        return lost if lost == 25 else None

    assert wait_for(reported, 120, "the 25 expired launches reported") == 25
    # the worker went on from the first launch left (none): the 40 stay counted, no more
    assert [r["total_learners"] for r in current_counts(settings).values()] == [40]
    assert worker.alive(), worker.log_tail()


def test_a_new_license_recuts_windows_and_tombstones_old_records(
    settings: Settings, worker: WorkerProcess
) -> None:
    launches = [
        {
            "event_id": f"e{n}",
            "tenant_id": "acme",
            "learner_id": f"l{n % 3}",
            "element_id": "x",
            "attempt_id": f"a{n}",
            "launched_at": f"2026-0{1 + n % 6}-10T12:00:00Z",
        }
        for n in range(12)
    ]
    monthly = {"tenant_id": "acme", "cycle_start": "2026-01-01", "window_months": 1}
    quarterly = {
        "tenant_id": "acme",
        "cycle_start": "2026-01-01",
        "window_months": 3,
        "learner_limit": 2,
    }
    worker.start()
    produce_json(settings, "licenses", [monthly])
    produce_json(settings, "launches", launches)
    wait_for(counts_match(settings, recount(launches, {"acme": monthly}, NOW)), 120, "monthly")

    produce_json(settings, "licenses", [quarterly])
    live = wait_for(
        counts_match(settings, recount(launches, {"acme": quarterly}, NOW)), 120, "quarterly"
    )
    assert ("acme", "2026-02-01") not in live, "monthly windows are tombstoned"
    assert live[("acme", "2026-04-01")]["window"] == {
        "start": "2026-04-01",
        "end": "2026-07-01",
        "months": 3,
    }
    assert live[("acme", "2026-04-01")]["utilization_pct"] == 150.0


GARBAGE: list[tuple[bytes | None, str]] = [
    (b"not json at all", "not JSON"),
    (b"", "empty"),
    (None, "null"),
    (b"\xff\xfe\xfa", "not UTF-8"),
    (b"[1, 2, 3]", "not an object"),
    (json.dumps({"event_id": 1, "tenant_id": "t"}).encode(), "event_id"),
    (
        json.dumps(
            {
                "event_id": "x",
                "tenant_id": "t",
                "learner_id": "l",
                "element_id": "e",
                "attempt_id": "a",
                "launched_at": "2026-01-01T10:00:00",
            }
        ).encode(),
        "timezone",
    ),
    (
        json.dumps(
            {
                "event_id": "x",
                "tenant_id": "t",
                "learner_id": "l" * 300_000,
                "element_id": "e",
                "attempt_id": "a",
                "launched_at": "2026-01-01T10:00:00Z",
            }
        ).encode(),
        "learner_id",
    ),
]


def test_garbage_is_dead_lettered_and_the_worker_keeps_counting(
    settings: Settings, worker: WorkerProcess
) -> None:
    worker.start()
    future = (NOW + timedelta(hours=3)).isoformat()
    good = {
        "event_id": "ok",
        "tenant_id": "t",
        "learner_id": "l",
        "element_id": "e",
        "attempt_id": "a",
        "launched_at": "2026-01-01T10:00:00Z",
    }
    conflict = {**good, "event_id": "ok2", "launched_at": "2026-01-01T11:00:00Z"}
    records: list[tuple[str, bytes | None, bytes | None]] = [
        ("launches", b"k", value) for value, _ in GARBAGE
    ]
    records += [
        ("launches", b"t/l", json.dumps({**good, "event_id": "f", "launched_at": future}).encode()),
        ("launches", b"t/l", json.dumps(good).encode()),
        ("launches", b"t/l", json.dumps(conflict).encode()),
        ("licenses", b"t", b'{"tenant_id": "t", "window_months": 2}'),
    ]
    produce_records(settings, records)

    def dead_letters() -> list[dict] | None:
        found = [json.loads(v) for _, v in read_topic(settings, topics.DEAD_LETTERS) if v]
        return found if len(found) >= len(GARBAGE) + 3 else None

    letters = wait_for(dead_letters, 120, "every bad record in dead-letters")
    by_reason: dict[str, list[dict]] = {}
    for letter in letters:
        by_reason.setdefault(letter["reason"], []).append(letter)
    invalid_details = " | ".join(letter["detail"] for letter in by_reason["invalid"])
    for _, words in GARBAGE:
        assert words in invalid_details
    assert len(by_reason["future"]) == 1 and len(by_reason["conflict"]) == 1
    assert json.loads(by_reason["conflict"][0]["raw"])["event_id"] == "ok2"
    binary = [letter for letter in by_reason["invalid"] if letter.get("raw_encoding")]
    assert binary and binary[0]["raw_encoding"] == "base64"
    sources = {letter["source"]["topic"] for letter in letters}
    assert sources == {settings.topic("launches"), settings.topic("licenses")}

    # the worker survived all of it and counted the one good launch exactly once
    live = wait_for(
        counts_match(settings, {("t", "2026-01-01"): (1, 1)}), 60, "the good launch counted"
    )
    assert live[("t", "2026-01-01")]["active_learners"] == 1
    assert worker.alive(), worker.log_tail()


def test_sigkill_mid_stream_then_restart_gives_exact_counts(
    settings: Settings, worker: WorkerProcess
) -> None:
    records = list(generate(DatasetSpec(launches=50_000, tenants=8, seed=5, now=NOW)))
    launches, licenses = split(records)
    produce_in_order(settings, records)

    worker.start()

    def attempts_written() -> int | None:
        written = len(read_topic(settings, topics.ATTEMPTS, timeout_s=60))
        return written if written >= 8_000 else None

    wait_for(attempts_written, 300, "the worker to be well into the stream", interval_s=2)
    worker.kill()
    assert not worker.alive()

    worker.start()
    expected = recount(launches, licenses, NOW)
    wait_for(counts_match(settings, expected), 600, "exact counts after SIGKILL", interval_s=3)
    # the compacted attempts topic holds every tracked attempt exactly once
    attempts = latest_by_key(read_topic(settings, topics.ATTEMPTS, timeout_s=120))
    tracked = {
        (a["tenant_id"], a["learner_id"], a["attempt_id"])
        for a in launches
        if is_tracked(
            a.get("launched_by", "learner"), a.get("content_type"), a.get("tracking", "tracked")
        )
    }
    assert {tuple(key.decode().split("/")) for key in attempts} == tracked


def test_two_workers_on_one_host_share_partitions_and_count_exactly(
    settings: Settings, tmp_path: Path
) -> None:
    from dataclasses import replace

    ensure_topics(settings)
    records = list(generate(DatasetSpec(launches=6000, tenants=5, seed=21, now=NOW)))
    launches, licenses = split(records)
    first = WorkerProcess(replace(settings, state_dir=tmp_path / "a"), tmp_path / "a.log")
    second = WorkerProcess(replace(settings, state_dir=tmp_path / "b"), tmp_path / "b.log")
    try:
        first.start()
        second.start()

        def both_assigned() -> bool:
            # each opens the RocksDB partitions of the learner tables it was assigned
            return all(
                any(state.rglob("attempts-*.db")) for state in (tmp_path / "a", tmp_path / "b")
            )

        wait_for(both_assigned, 120, "both workers to hold partitions")
        produce_in_order(settings, records)
        expected = recount(launches, licenses, NOW)
        wait_for(counts_match(settings, expected), 300, "exact counts from two workers")
        assert first.alive() and second.alive(), first.log_tail() + second.log_tail()
    finally:
        first.stop()
        second.stop()


def test_processes_share_the_partitions_and_stop_together(
    settings: Settings, tmp_path: Path
) -> None:
    """`worker --processes 2`: two processes of one command, each with its own state folder and
    web port, count exactly; SIGTERM to the command stops both."""
    import urllib.request

    ensure_topics(settings)
    records = list(generate(DatasetSpec(launches=5000, tenants=5, seed=23, now=NOW)))
    launches, licenses = split(records)
    pair = WorkerProcess(settings, tmp_path / "pair.log", args=["--processes", "2"])
    try:
        pair.start()
        states = [settings.state_dir / "process-0", settings.state_dir / "process-1"]

        def both_assigned() -> bool:
            pair.check_alive()
            return all(any(state.rglob("attempts-*.db")) for state in states)

        wait_for(both_assigned, 120, "both processes to hold partitions")
        produce_in_order(settings, records)
        expected = recount(launches, licenses, NOW)
        wait_for(counts_match(settings, expected), 300, "exact counts from two processes")

        # each answers on its own port: WEB_PORT and WEB_PORT + 1
        for port in (pair.web_port, pair.web_port + 1):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
                assert answer.status == 200
        assert pair.process is not None
        children = [
            int(pid)
            for pid in Path(f"/proc/{pair.process.pid}/task/{pair.process.pid}/children")
            .read_text()
            .split()
        ]
        assert len(children) == 2
    finally:
        pair.stop()
    assert pair.process is not None and pair.process.returncode == 0, pair.log_tail()
    for pid in children:  # both gone with their parent, none left behind
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
    assert "2 processes" in pair.log_text()


def test_more_processes_than_partitions_is_a_one_line_error(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    many = WorkerProcess(settings, tmp_path / "many.log", args=["--processes", "5"])
    many.start()
    assert many.process is not None
    assert many.process.wait(timeout=60) == 1
    assert "--processes 5 is more than the 4 partitions" in many.log_text()
    assert "Traceback" not in many.log_text()


def test_a_process_that_dies_stops_the_set_with_a_failure(
    settings: Settings, tmp_path: Path
) -> None:
    """One of `--processes 2` killed: the other is stopped and the command exits non-zero, so
    a service manager restarts the set (a half-running set would hide the failure)."""
    import os
    import signal

    ensure_topics(settings)
    pair = WorkerProcess(settings, tmp_path / "pair.log", args=["--processes", "2"])
    pair.start()
    assert pair.process is not None
    children_file = Path(f"/proc/{pair.process.pid}/task/{pair.process.pid}/children")
    states = [settings.state_dir / "process-0", settings.state_dir / "process-1"]
    try:

        def both_assigned() -> bool:
            pair.check_alive()
            return all(any(state.rglob("attempts-*.db")) for state in states)

        wait_for(both_assigned, 120, "both processes to hold partitions")
        first, second = (int(pid) for pid in children_file.read_text().split())
        os.kill(first, signal.SIGKILL)
        code = pair.process.wait(timeout=60)
    finally:
        pair.stop()
    assert code == 128 + signal.SIGKILL
    assert not Path(f"/proc/{second}").exists()  # stopped and reaped by the supervisor
    assert f"process {first} ended with -9; stopping the others" in pair.log_text()
