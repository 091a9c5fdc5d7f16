"""Ordinary input that used to go wrong: re-cuts, poison records, deletion keys, replays."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas import topics
from streams.cli.deletions import build_request, send_and_wait
from streams.config.settings import Settings
from streams.domain.partitioning import learner_partition
from streams.domain.recount import recount, without_deleted
from streams.domain.selectors import Selector
from streams.domain.windows import add_months
from streams.kafka.io import current_counts, latest_by_key, produce_records, read_topic
from tests.integration.harness import WorkerProcess, produce_json, wait_for
from tests.integration.test_pipeline import counts_gone, counts_match

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
PARTITIONS = 4  # the test settings' partition count
# a yearly cycle that started on the first of the month two months ago: NOW and the 20 days
# before it are inside its current window whatever the date (a fixed year would not be)
CYCLE_START = add_months(NOW.date().replace(day=1), -2)


def launches(tenant: str, learners: int, per_learner: int = 2, days: int = 20) -> list[dict]:
    out = []
    for n in range(learners * per_learner):
        out.append(
            {
                "event_id": f"{tenant}-{n}",
                "tenant_id": tenant,
                "learner_id": f"l{n % learners}",
                "element_id": "course",
                "attempt_id": f"a{n}",
                "launched_at": (
                    NOW - timedelta(hours=1 + n * days * 24 // (learners * per_learner))
                ).isoformat(),
                "content_type": "scorm",
            }
        )
    return out


def read(settings: Settings, topic: str) -> list[dict[str, Any]]:
    return [json.loads(v) for _, v in read_topic(settings, topic) if v]


def test_a_timezone_change_fires_no_false_alarm_and_never_publishes_zero(
    settings: Settings, worker: WorkerProcess
) -> None:
    license_ = {
        "tenant_id": "acme",
        "cycle_start": CYCLE_START.isoformat(),
        "window_months": 12,
        "learner_limit": 10,
        "timezone": "UTC",
    }
    history = launches("acme", learners=10, days=10)
    worker.start()
    produce_json(settings, "licenses", [license_])
    produce_json(settings, "launches", history)
    wait_for(counts_match(settings, recount(history, {"acme": license_}, NOW)), 120, "counts")
    wait_for(lambda: len(read(settings, topics.THRESHOLD_EVENTS)) == 3, 60, "80/90/100 up")

    tokyo = {**license_, "timezone": "Asia/Tokyo"}
    produce_json(settings, "licenses", [tokyo])
    wait_for(counts_match(settings, recount(history, {"acme": tokyo}, NOW)), 120, "re-cut")
    # one key's records are in offset order: once at 10, the current window never shows less

    def current_window_records() -> list[int] | None:
        values = [
            json.loads(v)["active_learners"]
            for k, v in read_topic(settings, topics.ACTIVE_LEARNER_COUNTS)
            if k == f"acme/{CYCLE_START.isoformat()}".encode() and v
        ]
        since_full = values[values.index(10) :] if 10 in values else []
        return values if len(since_full) >= 2 else None  # the new license republished it

    current = wait_for(current_window_records, 60, "the record republished under the new cut")
    assert set(current[current.index(10) :]) == {10}, current
    assert len(read(settings, topics.THRESHOLD_EVENTS)) == 3, "no down/up pair, no e-mails"


def test_poison_records_are_dead_lettered_and_counting_goes_on(
    settings: Settings, worker: WorkerProcess
) -> None:
    good = launches("acme", learners=3, per_learner=1)
    big = {**good[0], "event_id": "big", "attempt_id": "big", "padding": "x" * 680_000}
    big_conflict = {
        **big,
        "event_id": "big-2",
        "launched_at": (NOW - timedelta(days=3)).isoformat(),
    }
    nested = b'{"request_id": "deep", "tenant_id": "acme", "x": ' + b"[" * 1100 + b"]" * 1100 + b"}"
    worker.start()
    produce_records(
        settings,
        [
            (
                "licenses",
                b"acme",
                json.dumps({"tenant_id": "acme", "timezone": "America"}).encode(),
            ),
            (
                "launches",
                b"k",
                json.dumps(
                    {
                        **good[0],
                        "event_id": "old",
                        "attempt_id": "old",
                        "launched_at": "0001-01-01T00:00:00Z",
                    }
                ).encode(),
            ),
            (
                "launches",
                b"k",
                json.dumps({**good[0], "event_id": "epoch", "launched_at": "1700000000"}).encode(),
            ),
            ("attempt-deletions", b"acme", nested),
            ("launches", b"k", json.dumps(big).encode()),
            ("launches", b"k", json.dumps(big_conflict).encode()),
        ],
    )
    produce_json(settings, "launches", good)
    letters = wait_for(
        lambda: (
            len(read(settings, topics.DEAD_LETTERS)) >= 5 and read(settings, topics.DEAD_LETTERS)
        ),
        120,
        "five dead letters",
    )
    by_reason: dict[str, list[dict]] = {}
    for letter in letters:
        by_reason.setdefault(letter["reason"], []).append(letter)
    assert len(by_reason["invalid"]) == 4
    assert {l_["source"]["topic"] for l_ in by_reason["invalid"]} == {
        settings.topic(t) for t in ("licenses", "launches", "attempt-deletions")
    }
    [conflict] = by_reason["conflict"]
    # the raw text, read back by its position (and cut to the dead letter's size limit)
    assert conflict["raw"].startswith('{"event_id": "big-2"')
    expected = recount([*good, big], {}, NOW)
    wait_for(counts_match(settings, expected), 60, "the good launches and the big one counted")
    assert worker.alive(), worker.log_tail()


def test_two_tenants_may_use_the_same_request_id(settings: Settings, worker: WorkerProcess) -> None:
    history = launches("acme", learners=6) + launches("globex", learners=4)
    worker.start()
    produce_json(settings, "launches", history)
    wait_for(counts_match(settings, recount(history, {}, NOW)), 120, "counts")
    receipts = []
    for tenant in ("acme", "globex"):
        request = {
            **build_request(tenant, "physical", Selector.of("older_than", [NOW.isoformat()]), NOW),
            "request_id": "shared-1",
        }
        receipts.append(send_and_wait(settings, request, 120))
    assert [r["attempts_affected"] for r in receipts] == [12, 8]
    wait_for(counts_gone(settings), 120, "both tenants gone (no license, no attempt left)")


def test_a_request_for_fifty_thousand_learners(settings: Settings, worker: WorkerProcess) -> None:
    history = launches("acme", learners=200, per_learner=1)
    worker.start()
    produce_json(settings, "launches", history)
    wait_for(counts_match(settings, recount(history, {}, NOW)), 120, "counts")
    learner_ids = [f"l{n}" for n in range(50_000)]  # 200 of them have attempts
    request = build_request("acme", "physical", Selector.of("learner_ids", learner_ids), NOW)
    receipt = send_and_wait(settings, request, 300)
    assert (receipt["error"], receipt["attempts_affected"], receipt["learners_affected"]) == (
        None,
        200,
        200,
    )
    wait_for(counts_gone(settings), 120, "every learner gone, and the tenant with them")


def test_a_part_found_done_still_deletes_what_its_crash_left_behind(
    settings: Settings, worker: WorkerProcess, tmp_path: Path
) -> None:
    """The `done` marker reached the changelog, the tombstones did not (simulated)."""
    history = launches("acme", learners=8)
    worker.start()
    produce_json(settings, "launches", history)
    wait_for(counts_match(settings, recount(history, {}, NOW)), 120, "counts")
    worker.stop()

    request = build_request("acme", "physical", Selector.of("learner_ids", ["l1", "l2"]), NOW)
    named = {learner_partition("acme", learner, PARTITIONS) for learner in ("l1", "l2")}
    first = min(named)
    # every learner partition runs a part (part n in partition n here); the partition of the
    # named learners reports the stored figures, the others none
    stored_report = {"attempts_affected": 4, "learners_affected": 2, "losses": {}, "counts": {}}
    produce_records(
        settings,
        [
            (
                topics.ERASURES_CHANGELOG,
                f"done/acme/{request['request_id']}/{part}".encode(),
                json.dumps(
                    stored_report
                    if part == first
                    else {**stored_report, "attempts_affected": 0, "learners_affected": 0}
                ).encode(),
            )
            for part in range(PARTITIONS)
        ],
        partition_of=lambda record: int(record[1].decode().rsplit("/", 1)[1]),
    )
    fresh = WorkerProcess(
        replace(settings, state_dir=tmp_path / "fresh"), tmp_path / "fresh.log"
    ).start()
    try:
        receipt = send_and_wait(settings, request, 120)
        assert receipt["attempts_affected"] == 4  # the stored figures of the part
        kept = without_deleted(history, request)
        wait_for(counts_match(settings, recount(kept, {}, NOW)), 120, "the learners deleted anyway")
        stored = latest_by_key(read_topic(settings, topics.ATTEMPTS))
        assert not [k for k in stored if k.startswith((b"acme/l1/", b"acme/l2/"))]
    finally:
        fresh.stop()


def test_a_tenant_emptied_in_a_partition_reports_zero_after_a_rebuild(
    settings: Settings, worker: WorkerProcess, tmp_path: Path
) -> None:
    history = launches("acme", learners=8) + launches("globex", learners=3)
    worker.start()
    produce_json(settings, "launches", history)
    wait_for(counts_match(settings, recount(history, {}, NOW)), 120, "counts")
    request = build_request("acme", "physical", Selector.of("older_than", [NOW.isoformat()]), NOW)
    send_and_wait(settings, request, 120)
    worker.kill()  # perhaps before the zero partial counts were reported
    fresh = WorkerProcess(
        replace(settings, state_dir=tmp_path / "fresh"), tmp_path / "fresh.log"
    ).start()
    try:
        expected = recount(without_deleted(history, request), {}, NOW)
        wait_for(counts_match(settings, expected), 120, "acme at 0, globex unchanged")
        live = current_counts(settings)
        assert all(r["active_learners"] == 0 for (t, _), r in live.items() if t == "acme")
    finally:
        fresh.stop()
