"""Deleting attempt records on a real broker: physical, logical, preview; receipts; erasure."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from schemas import topics
from streams.cli.deletions import build_request, send_and_wait
from streams.config.settings import Settings
from streams.domain.recount import recount, without_deleted
from streams.domain.selectors import Selector
from streams.kafka.io import latest_by_key, produce_records, read_topic
from tests.integration.harness import WorkerProcess, produce_json, wait_for
from tests.integration.test_pipeline import counts_match

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
# The current 12-month window began ten months ago, before the tests' 8-month cut-off, whatever
# the day: a fixed cycle start (2025-12-01) made a new window begin on 2026-12-01, one that no
# older_than deletion changes for 8 months, and the receipt rightly left it out.
_MONTHS_BACK = NOW.year * 12 + NOW.month - 1 - 10
CYCLE_START = date(_MONTHS_BACK // 12, _MONTHS_BACK % 12 + 1, 1)
LICENSE = {
    "tenant_id": "acme",
    "cycle_start": CYCLE_START.isoformat(),
    "window_months": 12,
    "learner_limit": 100,
}


def history(learners: int, days: int, seed: int) -> list[dict[str, Any]]:
    """Two launches per learner at random instants of the last `days` days (plus one tenant)."""
    rng = random.Random(seed)
    launches = []
    for n in range(learners * 2):
        launched_at = NOW - timedelta(seconds=rng.randrange(days * 86_400))
        for tenant in ("acme", "other"):
            launches.append(
                {
                    "event_id": f"{tenant}-{n}",
                    "tenant_id": tenant,
                    "learner_id": f"l{n % learners}",
                    "element_id": "course",
                    "attempt_id": f"a{n}",
                    "launched_at": launched_at.isoformat(),
                    "content_type": "scorm",
                }
            )
    return launches


@pytest.fixture
def worker(worker: WorkerProcess) -> WorkerProcess:
    """The deletion tests all start with a running worker."""
    return worker.start()


def dead_letters(settings: Settings, reason: str) -> list[dict]:
    records = [json.loads(v) for _, v in read_topic(settings, topics.DEAD_LETTERS) if v]
    return [r for r in records if r["reason"] == reason]


def receipts(settings: Settings) -> list[dict]:
    return [json.loads(v) for _, v in read_topic(settings, topics.DELETION_RECEIPTS) if v]


def test_older_than_leaves_exactly_the_learners_of_the_last_8_months(
    settings: Settings, worker: WorkerProcess
) -> None:
    launches = history(learners=150, days=420, seed=3)
    produce_json(settings, "licenses", [LICENSE])
    produce_json(settings, "launches", launches)
    wait_for(counts_match(settings, recount(launches, {"acme": LICENSE}, NOW)), 180, "counts")

    cutoff = NOW - timedelta(days=8 * 30)
    request = build_request(
        "acme", "physical", Selector.of("older_than", [cutoff.isoformat()]), NOW
    )
    receipt = send_and_wait(settings, request, 120)

    removed = [
        launch
        for launch in launches
        if launch["tenant_id"] == "acme" and datetime.fromisoformat(launch["launched_at"]) < cutoff
    ]
    assert receipt["error"] is None
    assert receipt["attempts_affected"] == len(removed)
    assert receipt["learners_affected"] == len({launch["learner_id"] for launch in removed})
    kept = without_deleted(launches, request)
    expected = recount(kept, {"acme": LICENSE}, NOW)
    live = wait_for(counts_match(settings, expected), 120, "counts after the deletion")

    # the current 12-month window holds exactly the learners active since the cut-off
    current = max(k for k in live if k[0] == "acme")
    recent = {
        launch["learner_id"]
        for launch in kept
        if launch["tenant_id"] == "acme"
        and datetime.fromisoformat(launch["launched_at"])
        >= datetime.fromisoformat(current[1] + "T00:00:00+00:00")
    }
    assert live[current]["active_learners"] == len(recent)
    other_current = max(k for k in live if k[0] == "other")
    assert live[other_current]["active_learners"] > 0, "other tenants are untouched"
    windows = {w["start"]: w for w in receipt["windows"]}
    assert windows[current[1]]["active_after"] == len(recent)

    # every removed attempt has a tombstone on the compacted attempts topic
    records = read_topic(settings, topics.ATTEMPTS)
    tombstoned = {key.decode() for key, value in records if value is None}
    assert tombstoned == {
        f"acme/{launch['learner_id']}/{launch['attempt_id']}" for launch in removed
    }
    assert not any(key.decode() in tombstoned for key in latest_by_key(records))

    # the same request again (a redelivery): answered with the same receipt, nothing deleted twice
    produce_json(settings, "attempt-deletions", [request])
    # a replay of an erased launch is dead-lettered `erased` and never counted again
    produce_json(settings, "launches", removed[:3])
    wait_for(lambda: len(dead_letters(settings, "erased")) >= 3, 60, "erased dead letters")
    worker.stop()
    worker.start()
    produce_json(settings, "launches", removed[3:5])
    wait_for(lambda: len(dead_letters(settings, "erased")) >= 5, 120, "erased after a restart")
    wait_for(counts_match(settings, expected), 60, "counts unchanged by the replays")
    answers = [r for r in receipts(settings) if r["request_id"] == request["request_id"]]
    assert len(answers) == 2, "the request and its redelivery, each answered once"
    assert all(answer == receipt for answer in answers)


def test_learner_and_attempt_selectors_in_every_mode(
    settings: Settings, worker: WorkerProcess
) -> None:
    launches = history(learners=40, days=200, seed=4)
    produce_json(settings, "licenses", [LICENSE])
    produce_json(settings, "launches", launches)
    expected = recount(launches, {"acme": LICENSE}, NOW)
    wait_for(counts_match(settings, expected), 180, "counts")
    acme = [launch for launch in launches if launch["tenant_id"] == "acme"]

    # preview: the numbers of a physical deletion, and nothing changes
    selector = Selector.of("learner_ids", ["l1", "l2"])
    preview = send_and_wait(settings, build_request("acme", "preview", selector, NOW), 120)
    doomed = [launch for launch in acme if launch["learner_id"] in ("l1", "l2")]
    assert (preview["attempts_affected"], preview["learners_affected"]) == (len(doomed), 2)
    assert preview["windows"] and all(
        w["active_after"] < w["active_before"] for w in preview["windows"]
    )
    wait_for(counts_match(settings, expected), 30, "counts unchanged by a preview")

    # logical: marked, still counted
    first = acme[0]
    ref = Selector.of("attempts", [(first["learner_id"], first["attempt_id"])])
    logical = send_and_wait(settings, build_request("acme", "logical", ref, NOW), 120)
    assert (logical["attempts_affected"], logical["windows"]) == (1, [])
    key = f"acme/{first['learner_id']}/{first['attempt_id']}".encode()
    stored = latest_by_key(read_topic(settings, topics.ATTEMPTS))
    assert stored[key]["logically_deleted"] is True
    wait_for(counts_match(settings, expected), 30, "counts unchanged by a logical delete")

    # physical by learner: gone; the same learner counts again for a launch after the deletion
    deleted_at = datetime.now(UTC)
    request = build_request("acme", "physical", selector, deleted_at)
    receipt = send_and_wait(settings, request, 120)
    assert receipt["attempts_affected"] == len(doomed)
    kept = without_deleted(launches, request)
    wait_for(counts_match(settings, recount(kept, {"acme": LICENSE}, NOW)), 120, "after delete")
    comeback = {
        **doomed[0],
        "event_id": "comeback",
        "attempt_id": "new-attempt",
        "launched_at": (deleted_at + timedelta(seconds=1)).isoformat(),
    }
    too_old = {
        **doomed[0],
        "event_id": "too-old",
        "attempt_id": "another",
        "launched_at": (deleted_at - timedelta(days=1)).isoformat(),
    }
    produce_json(settings, "launches", [comeback, too_old])
    later_now = datetime.now(UTC)
    wait_for(
        counts_match(settings, recount([*kept, comeback], {"acme": LICENSE}, later_now)),
        120,
        "the learner counted again",
    )
    letters = wait_for(lambda: dead_letters(settings, "erased"), 60, "the older launch erased")
    assert json.loads(letters[0]["raw"])["event_id"] == "too-old"

    # physical by attempt, then a replay of exactly that attempt is erased
    second = next(launch for launch in acme if launch["learner_id"] == "l5")
    ref = Selector.of("attempts", [("l5", second["attempt_id"])])
    receipt = send_and_wait(settings, build_request("acme", "physical", ref, NOW), 120)
    assert receipt["attempts_affected"] == 1
    produce_json(settings, "launches", [second])
    wait_for(lambda: len(dead_letters(settings, "erased")) >= 2, 60, "the attempt erased")


def test_invalid_requests_get_error_receipts_or_dead_letters(
    settings: Settings, worker: WorkerProcess
) -> None:
    base = {
        "request_id": "bad-1",
        "tenant_id": "acme",
        "mode": "physical",
        "requested_at": NOW.isoformat(),
    }
    records = [
        ("attempt-deletions", b"acme", json.dumps(base).encode()),  # no selector
        (
            "attempt-deletions",
            b"acme",
            json.dumps(
                {
                    **base,
                    "request_id": "bad-2",
                    "learner_ids": ["l1"],
                    "older_than": NOW.isoformat(),
                }
            ).encode(),
        ),  # two selectors
        (
            "attempt-deletions",
            b"acme",
            json.dumps(
                {**base, "request_id": "bad-3", "mode": "shred", "older_than": NOW.isoformat()}
            ).encode(),
        ),  # unknown mode
        (
            "attempt-deletions",
            b"acme",
            json.dumps({**base, "request_id": "bad-4", "older_than": "last tuesday"}).encode(),
        ),
        ("attempt-deletions", b"acme", b"{not json"),  # no usable request id
        ("attempt-deletions", b"acme", json.dumps({"tenant_id": "acme"}).encode()),
    ]
    produce_records(settings, records)
    found = wait_for(lambda: len(receipts(settings)) >= 4 and receipts(settings), 60, "receipts")
    by_id = {r["request_id"]: r for r in found}
    assert set(by_id) == {"bad-1", "bad-2", "bad-3", "bad-4"}
    assert all(r["error"] and r["attempts_affected"] == 0 for r in by_id.values())
    assert "exactly one selector" in by_id["bad-2"]["error"]
    letters = wait_for(
        lambda: len(dead_letters(settings, "invalid")) >= 2 and dead_letters(settings, "invalid"),
        60,
        "dead letters",
    )
    assert {letter["source"]["topic"] for letter in letters} == {
        settings.topic("attempt-deletions")
    }


def test_remaining_selector_and_mode_pairs_change_nothing_but_what_they_should(
    settings: Settings, worker: WorkerProcess
) -> None:
    """older_than preview and logical, learner_ids logical, attempts preview."""
    launches = history(learners=30, days=300, seed=9)
    produce_json(settings, "licenses", [LICENSE])
    produce_json(settings, "launches", launches)
    expected = recount(launches, {"acme": LICENSE}, NOW)
    wait_for(counts_match(settings, expected), 180, "counts")
    acme = [launch for launch in launches if launch["tenant_id"] == "acme"]
    cutoff = NOW - timedelta(days=150)
    old = [launch for launch in acme if datetime.fromisoformat(launch["launched_at"]) < cutoff]

    def stored() -> dict:
        return latest_by_key(read_topic(settings, topics.ATTEMPTS))

    # older_than preview: the physical numbers, nothing changes
    preview = send_and_wait(
        settings,
        build_request("acme", "preview", Selector.of("older_than", [cutoff.isoformat()]), NOW),
        120,
    )
    assert preview["attempts_affected"] == len(old)
    assert preview["learners_affected"] == len({launch["learner_id"] for launch in old})
    assert len(stored()) == len(launches)

    # attempts preview: one attempt, nothing changes
    first = acme[0]
    ref = Selector.of("attempts", [(first["learner_id"], first["attempt_id"])])
    preview = send_and_wait(settings, build_request("acme", "preview", ref, NOW), 120)
    assert preview["attempts_affected"] == 1
    assert not stored()[f"acme/{first['learner_id']}/{first['attempt_id']}".encode()][
        "logically_deleted"
    ]

    # older_than logical: every old attempt marked, counts unchanged
    logical = send_and_wait(
        settings,
        build_request("acme", "logical", Selector.of("older_than", [cutoff.isoformat()]), NOW),
        120,
    )
    assert (logical["attempts_affected"], logical["windows"]) == (len(old), [])
    marked = {key for key, record in stored().items() if record["logically_deleted"]}
    assert marked == {f"acme/{l_['learner_id']}/{l_['attempt_id']}".encode() for l_ in old}

    # learner_ids logical: that learner's attempts marked too
    logical = send_and_wait(
        settings, build_request("acme", "logical", Selector.of("learner_ids", ["l7"]), NOW), 120
    )
    sevens = [launch for launch in acme if launch["learner_id"] == "l7"]
    assert logical["attempts_affected"] == len(sevens)
    records = stored()
    assert all(
        records[f"acme/l7/{launch['attempt_id']}".encode()]["logically_deleted"]
        for launch in sevens
    )
    wait_for(counts_match(settings, expected), 30, "counts unchanged by all of it")
    assert not dead_letters(settings, "erased")
