"""Compound faults: two workers, kill -9 of each, a broker crash, a wiped state folder, replays.

The schedule that once left counts below the truth for good (the write-path issue):
  two workers count a backlog; one is killed with SIGKILL in the middle of it; the broker is
  killed with SIGKILL and restarted; the first worker comes back on its own state folder;
  deletions are delivered twice and a third of the launches again; the second worker is killed
  and comes back on an empty state folder.
Then counts and total learners equal an independent recount, every deletion has exactly one
receipt, the `attempts` topic holds exactly the attempts that remain, and both workers live.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas import topics
from streams.config.settings import Settings
from streams.domain.deletions import build_request
from streams.domain.recount import recount, without_deleted
from streams.domain.selectors import Selector
from streams.kafka.admin import broker_answers, ensure_topics, is_local_broker
from streams.kafka.io import read_topic
from streams.tools.dataset import DatasetSpec, generate
from tests.integration.conftest import KAFKA_SCRIPT
from tests.integration.harness import WorkerProcess, produce_json, wait_for
from tests.integration.test_crash_points import attempts_topic, tracked_keys
from tests.integration.test_pipeline import counts_match, produce_in_order, split

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


def local_broker() -> bool:
    return is_local_broker(Settings.from_env())


def broker(command: str) -> None:
    result = subprocess.run(
        ["bash", str(KAFKA_SCRIPT), command], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(not local_broker(), reason="kills and restarts the local broker")
def test_compound_faults_end_exact(settings: Settings, tmp_path: Path) -> None:
    ensure_topics(settings)
    rng = random.Random(8)
    records = list(generate(DatasetSpec(launches=40_000, tenants=6, seed=44, now=NOW)))
    launches, licenses = split(records)
    tenants = sorted({launch["tenant_id"] for launch in launches})
    learners_of = {
        t: sorted({a["learner_id"] for a in launches if a["tenant_id"] == t}) for t in tenants
    }
    first_of = next(a for a in launches if a["tenant_id"] == tenants[2])
    deletions = [
        build_request(
            tenants[0],
            "physical",
            Selector.of("older_than", [(NOW - timedelta(days=150)).isoformat()]),
            NOW,
        ),
        build_request(
            tenants[1], "physical", Selector.of("learner_ids", learners_of[tenants[1]][:25]), NOW
        ),
        build_request(
            tenants[2],
            "physical",
            Selector.of("attempts", [(first_of["learner_id"], first_of["attempt_id"])]),
            NOW,
        ),
        build_request(tenants[3], "preview", Selector.of("older_than", [NOW.isoformat()]), NOW),
    ]

    first = WorkerProcess(replace(settings, state_dir=tmp_path / "a"), tmp_path / "a.log")
    second = WorkerProcess(replace(settings, state_dir=tmp_path / "b"), tmp_path / "b.log")
    try:
        first.start()
        second.start()
        produce_in_order(settings, records)

        def attempts_written() -> int | None:
            written = len(read_topic(settings, topics.ATTEMPTS, timeout_s=60))
            return written if written >= 8_000 else None

        wait_for(attempts_written, 300, "the workers to be into the backlog", interval_s=0.5)
        first.kill()

        broker("crash")
        broker("start")
        wait_for(lambda: broker_answers(settings), 120, "the broker back")

        first.start()  # on its own state folder
        for _ in range(2):  # every deletion delivered twice
            produce_json(settings, "attempt-deletions", deletions)
        produce_in_order(settings, rng.sample(launches, len(launches) // 3))

        wait_for(attempts_written, 60, "progress after the broker came back")
        second.kill()
        shutil.rmtree(tmp_path / "b")
        second.start()  # on an empty state folder

        kept = launches
        for request in deletions:
            if request["mode"] == "physical":
                kept = without_deleted(kept, request)
        expected = recount(kept, licenses, NOW)
        wait_for(counts_match(settings, expected), 600, "exact counts", interval_s=3)
        wait_for(
            lambda: attempts_topic(settings) == tracked_keys(kept),
            120,
            "the attempts topic to hold exactly the attempts that remain",
        )

        def receipts_by_request() -> dict[str, list[dict]] | None:
            found = [json.loads(v) for _, v in read_topic(settings, topics.DELETION_RECEIPTS) if v]
            by_request: dict[str, list[dict]] = {}
            for receipt in found:
                by_request.setdefault(receipt["request_id"], []).append(receipt)
            return by_request if len(by_request) == len(deletions) else None

        by_request = wait_for(receipts_by_request, 120, "a receipt per request")
        assert set(by_request) == {r["request_id"] for r in deletions}
        # a request delivered twice gets one receipt; only a kill between a receipt's ack and
        # its command's commit repeats it, identical (at-least-once: keep the first)
        for receipts in by_request.values():
            assert all(r == receipts[0] for r in receipts)
            assert receipts[0]["error"] is None
        assert first.alive() and second.alive(), first.log_tail() + second.log_tail()
    finally:
        first.stop()
        second.stop()
        if not broker_answers(settings):
            broker("start")


@pytest.mark.skipif(not local_broker(), reason="kills and restarts the local broker")
def test_workers_exit_within_15_s_of_sigterm_when_the_broker_is_gone(
    settings: Settings, tmp_path: Path
) -> None:
    import signal
    import time

    ensure_topics(settings)
    records = list(generate(DatasetSpec(launches=20_000, tenants=4, seed=3, now=NOW)))
    launches, licenses = split(records)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    notifier = WorkerProcess(settings, tmp_path / "notifier.log", command="notifier").start()
    second = WorkerProcess(replace(settings, state_dir=tmp_path / "b"), tmp_path / "b.log").start()
    try:
        produce_in_order(settings, records)
        for process in (worker, second):
            wait_for(
                lambda p=process: "launch reader:" in p.log_path.read_text(), 120, "workers ready"
            )
        broker("crash")  # in the middle of the backlog
        assert worker.process and notifier.process and second.process

        started = time.monotonic()
        worker.process.send_signal(signal.SIGTERM)
        notifier.process.send_signal(signal.SIGTERM)
        worker.process.wait(timeout=30)
        notifier.process.wait(timeout=30)
        assert time.monotonic() - started < 15, "both exited within 15 s"

        # a second SIGTERM ends a stopping worker at once
        second.process.send_signal(signal.SIGTERM)
        # signals sent back to back merge into one: the second goes once the first was handled
        wait_for(lambda: "Signal received" in second.log_path.read_text(), 10, "the first one")
        started = time.monotonic()
        second.process.send_signal(signal.SIGTERM)
        second.process.wait(timeout=30)
        assert time.monotonic() - started < 3
        assert "second SIGTERM" in second.log_path.read_text()
    finally:
        for process in (worker, notifier, second):
            process.stop()
        if not broker_answers(settings):
            broker("start")
    wait_for(lambda: broker_answers(settings), 120, "the broker back")

    # nothing was lost: the same state folder (its RocksDB lock released) counts on exactly
    restarted = WorkerProcess(settings, tmp_path / "restart.log").start()
    try:
        wait_for(counts_match(settings, recount(launches, licenses, NOW)), 300, "exact counts")
    finally:
        restarted.stop()
