"""kill -9 in the middle of a batch, at each step of making it durable, then check everything.

`ACTIVE_LEARNERS_CRASH_AT=<point>:<n>` makes the worker SIGKILL itself the n-th time a state
flush that writes attempts reaches the point (streams/worker/faults.py):
  before-changelog  computed, nothing sent
  after-changelog   Kafka has every changelog record and output; RocksDB not written
  after-rocksdb     RocksDB written too; the input offsets neither acknowledged nor committed
After a restart on the same state folder, and again on a new worker with an empty one, counts,
total learners, the `attempts` topic and the deletion receipts must be exactly right.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas import topics
from streams.cli.deletions import build_request, send_and_wait
from streams.config.settings import Settings
from streams.domain.recount import recount, without_deleted
from streams.domain.selectors import Selector
from streams.domain.tracking import is_tracked
from streams.kafka.admin import ensure_topics
from streams.kafka.io import latest_by_key, read_topic
from streams.tools.dataset import DatasetSpec, generate
from tests.integration.harness import WorkerProcess, produce_json, wait_for
from tests.integration.test_pipeline import counts_match, produce_in_order, split

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


def tracked_keys(launches: list[dict]) -> set[tuple[str, str, str]]:
    return {
        (a["tenant_id"], a["learner_id"], a["attempt_id"])
        for a in launches
        if is_tracked(
            a.get("launched_by", "learner"), a.get("content_type"), a.get("tracking", "tracked")
        )
        and datetime.fromisoformat(a["launched_at"].replace("Z", "+00:00"))
        <= NOW + timedelta(hours=1)
    }


def attempts_topic(settings: Settings) -> set[tuple[str, ...]]:
    stored = latest_by_key(read_topic(settings, topics.ATTEMPTS, timeout_s=120))
    return {tuple(key.decode().split("/")) for key in stored}


def receipts(settings: Settings) -> list[dict]:
    return [json.loads(v) for _, v in read_topic(settings, topics.DELETION_RECEIPTS) if v]


@pytest.mark.parametrize("point", ["before-changelog", "after-changelog", "after-rocksdb"])
def test_a_kill_mid_batch_leaves_everything_exact(
    settings: Settings, tmp_path: Path, point: str
) -> None:
    ensure_topics(settings)
    records = list(generate(DatasetSpec(launches=12_000, tenants=5, seed=31, now=NOW)))
    launches, licenses = split(records)
    tenant = launches[0]["tenant_id"]
    cutoff = NOW - timedelta(days=200)
    deletion = build_request(
        tenant, "physical", Selector.of("older_than", [cutoff.isoformat()]), NOW
    )
    produce_in_order(settings, records)
    produce_json(settings, "attempt-deletions", [deletion])

    doomed = WorkerProcess(
        settings,
        tmp_path / "crash.log",
        extra_env={"ACTIVE_LEARNERS_CRASH_AT": f"{point}:3", "INGEST_BATCH_MAX": "500"},
    ).start()
    wait_for(lambda: not doomed.alive(), 300, f"the worker to kill itself at {point}")
    assert "SIGKILL" in doomed.exit_reason(), doomed.log_tail()

    survivor = WorkerProcess(settings, tmp_path / "restart.log").start()
    try:
        kept = without_deleted(launches, deletion)
        expected = recount(kept, licenses, NOW)
        wait_for(counts_match(settings, expected), 300, "exact counts after the restart")
        wait_for(
            lambda: attempts_topic(settings) == tracked_keys(kept),
            120,
            "the attempts topic to hold exactly the attempts that remain",
        )
        # A kill after the receipt was acknowledged, before its command was committed, sends
        # the same receipt again (at-least-once): identical, so a reader keeps the first.
        found = receipts(settings)
        assert {r["request_id"] for r in found} == {deletion["request_id"]}
        assert all(r == found[0] for r in found), "a repeated receipt is identical"
        # launches routed after the part ran were erased instead of deleted: not in the receipt
        removed = len(tracked_keys(launches)) - len(tracked_keys(kept))
        assert found[0]["error"] is None and found[0]["attempts_affected"] <= removed
    finally:
        survivor.stop()

    # a new worker on an empty state folder restores everything from the changelogs; a
    # preview of the whole tenant proves what it holds: every attempt and every membership
    fresh = WorkerProcess(
        replace(settings, state_dir=tmp_path / "fresh-state"), tmp_path / "fresh.log"
    ).start()
    try:
        preview = send_and_wait(
            settings,
            build_request(tenant, "preview", Selector.of("older_than", [NOW.isoformat()]), NOW),
            300,
        )
        mine = [k for k in tracked_keys(kept) if k[0] == tenant]
        assert preview["attempts_affected"] == len(mine)
        assert preview["learners_affected"] == len({k[1] for k in mine})
        by_window = {w["start"]: w["active_before"] for w in preview["windows"]}
        for (t, start), (active, _) in expected.items():
            if t == tenant:
                assert by_window.get(start) == active, start
        wait_for(counts_match(settings, expected), 60, "counts unchanged on the new worker")
    finally:
        fresh.stop()


@pytest.mark.parametrize("point", ["after-changelog", "after-rocksdb"])
def test_a_kill_inside_a_deletion_resurrects_nothing(
    settings: Settings, tmp_path: Path, point: str
) -> None:
    """Tombstones and RocksDB deletes of a chunk, cut short by kill -9, then a new worker."""
    ensure_topics(settings)
    records = list(generate(DatasetSpec(launches=6_000, tenants=3, seed=12, now=NOW)))
    launches, licenses = split(records)
    tenant = launches[0]["tenant_id"]
    produce_in_order(settings, records)
    doomed = WorkerProcess(
        settings,
        tmp_path / "crash.log",
        extra_env={"ACTIVE_LEARNERS_CRASH_AT": f"{point}:2:deletion"},
    ).start()
    wait_for(counts_match(settings, recount(launches, licenses, NOW)), 300, "counts")
    deletion = build_request(tenant, "physical", Selector.of("older_than", [NOW.isoformat()]), NOW)
    produce_json(settings, "attempt-deletions", [deletion])
    wait_for(lambda: not doomed.alive(), 120, f"the worker to die in the deletion ({point})")
    assert "SIGKILL" in doomed.exit_reason(), doomed.log_tail()

    # a new worker on an empty state folder restores only what reached the changelogs
    fresh = WorkerProcess(
        replace(settings, state_dir=tmp_path / "fresh"), tmp_path / "fresh.log"
    ).start()
    try:
        kept = without_deleted(launches, deletion)
        wait_for(counts_match(settings, recount(kept, licenses, NOW)), 300, "exact counts")
        wait_for(
            lambda: attempts_topic(settings) == tracked_keys(kept),
            120,
            "no deleted attempt in the attempts topic",
        )
        assert {r["request_id"] for r in receipts(settings)} == {deletion["request_id"]}
    finally:
        fresh.stop()
