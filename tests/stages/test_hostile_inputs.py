"""Hostile records on every input topic (an attack on ingest and the stages, 2026-12).

The house rule: invalid input is dead-lettered with a reason, the worker never stops for a
record, nothing is dropped silently, a valid record is never dead-lettered, counts stay exact.
Each test names the record that broke it and what a user saw.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from schemas import topics
from streams.stages.ingest import IngestStage
from streams.stages.memory import MemoryStore
from streams.stages.store import MAX_RECORD_BYTES
from tests.stages.pipeline import Pipeline, deletion, launch, license_

JAN = "2026-01-01"
NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)


class Rec:
    """An input record as the ingest stage reads it."""

    def __init__(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self.topic = topic
        self.key = key
        self.value = value
        self.partition = 0
        self.offset = 7
        self.timestamp = int(NOW.timestamp() * 1000)


def routed_dead_letters(records: list[Rec]) -> list[tuple[bytes | None, bytes]]:
    """Route launches through ingest into a batch; the dead-letter records it would write."""
    batch = MemoryStore(partitions=2).batch()
    IngestStage(2).route_launches(batch, records)  # type: ignore[arg-type]
    return [
        (key, value)
        for (topic, _), rows in batch._outputs.items()
        if topic == topics.DEAD_LETTERS
        for key, value in rows
        if value is not None
    ]


# -- dead letters that do not fit in a Kafka record ---------------------------------------------
# A dead letter kept the first 600,000 bytes of the raw value, but JSON writes a control
# character as `\u0001` (6 bytes) and a quote or backslash as 2: the dead letter of a 200 kB
# value outgrew Kafka's limit. The launch reader then failed on the whole batch and read it
# again forever (every launch of the partition stalled); a license or deletion request was
# given up and its dead letter refused too, so it was lost with a log line.
def test_a_launch_of_control_characters_is_dead_lettered_within_the_record_limit() -> None:
    [(key, value)] = routed_dead_letters([Rec(topics.LAUNCHES, b"k", b"\x01" * 200_000)])
    letter = json.loads(value)
    assert len(value) + len(key or b"") <= MAX_RECORD_BYTES
    assert letter["reason"] == "invalid" and "truncated" in letter["detail"]
    assert letter["raw"] and set(letter["raw"]) == {"\x01"}


def test_a_launch_of_quotes_under_a_huge_key_is_dead_lettered_within_the_record_limit() -> None:
    # Kafka takes a 1 MiB input record: a 600 kB key and a 440 kB value fit in it
    [(key, value)] = routed_dead_letters([Rec(topics.LAUNCHES, b"k" * 600_000, b'"' * 440_000)])
    assert len(value) + len(key or b"") <= MAX_RECORD_BYTES
    assert json.loads(value)["reason"] == "invalid"


def test_a_license_too_large_to_dead_letter_whole_is_still_dead_lettered() -> None:
    p = Pipeline(partitions=1)
    p.produce(topics.LICENSES, b"\\" * 600_000, key=b"acme")
    p.produce(topics.LICENSES, license_("acme"))
    p.run(topics.LICENSES)
    [letter] = p.dead_letters()
    assert letter["source"]["topic"] == topics.LICENSES and letter["reason"] == "invalid"
    assert "not JSON" in letter["detail"] and p.world.gave_up == []


def test_a_conflict_with_a_large_escaped_field_costs_no_other_launch() -> None:
    """The learner stage's dead letter of a conflicting launch (read back by its position)
    outgrew the limit: the whole command was given up, and the valid launches beside it were
    dead-lettered as `could not apply` and never counted."""
    p = Pipeline(partitions=1)
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    padding = '"' * 400_000  # 800 kB as JSON: a valid launch below Kafka's 1 MiB
    conflicting = launch("acme", "l1", "a1", "2026-02-11T10:00:00Z", padding=padding)
    p.produce(topics.LAUNCHES, conflicting)
    p.produce(topics.LAUNCHES, launch("acme", "l2", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    p.settle()
    assert [d["reason"] for d in p.dead_letters()] == ["conflict"]
    assert p.active("acme", JAN) == 2
    assert p.world.gave_up == []
    assert p.check() == []


# -- learner-groups -------------------------------------------------------------------------------
def _groups(learner: str, teams: list[str], roles: list[str] | None = None) -> dict[str, Any]:
    return {"tenant_id": "acme", "learner_id": learner, "teams": teams, "roles": roles or []}


def test_learners_with_the_most_groups_are_stored_not_dead_lettered() -> None:
    """Learner-groups records were cut into commands of 2,000 rows whatever their size: two
    learners with 1,000 teams and 1,000 roles of 256 characters (valid) made a command above
    Kafka's limit, and every record of the group, valid or not, was dead-lettered: team
    deletions then missed those learners."""
    p = Pipeline(partitions=1)
    ids = [f"{n:0256d}" for n in range(1_000)]
    for learner in ("l1", "l2"):
        p.produce(topics.LAUNCHES, launch("acme", learner, "a1", "2026-02-10T10:00:00Z"))
        p.produce(topics.LEARNER_GROUPS, _groups(learner, ids, ids))
    p.flow()
    assert p.dead_letters() == [] and p.world.gave_up == []
    p.produce(topics.ATTEMPT_DELETIONS, deletion("acme", "r1", "preview", p.now, teams=[ids[-1]]))
    p.flow()
    p.settle()
    [receipt] = p.receipts("r1")
    assert receipt["error"] is None and receipt["learners_affected"] == 2


def test_a_learner_in_more_than_a_thousand_teams_is_stored() -> None:
    """The contract sets no number of teams or roles; the schema refused more than 1,000, so a
    valid record was dead-lettered and team deletions missed that learner."""
    p = Pipeline(partitions=1)
    teams = [f"team-{n}" for n in range(3_000)]
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-02-10T10:00:00Z"))
    p.produce(topics.LEARNER_GROUPS, _groups("l1", teams, teams[:1_500]))
    p.flow()
    assert p.dead_letters() == [] and p.world.gave_up == []
    p.produce(
        topics.ATTEMPT_DELETIONS, deletion("acme", "r1", "preview", p.now, teams=["team-2999"])
    )
    p.flow()
    p.settle()
    assert p.receipts("r1")[0]["learners_affected"] == 1


def test_groups_too_large_to_store_whole_are_dead_lettered_alone() -> None:
    """1,000 teams of 256 emoji (a record Kafka takes) cannot be stored in one value: that record
    is dead-lettered with its reason, and the records around it are stored."""
    p = Pipeline(partitions=1)
    p.produce(topics.LAUNCHES, launch("acme", "l2", "a1", "2026-02-10T10:00:00Z"))
    emoji = [f"{n:04d}" + "\U0001f600" * 252 for n in range(1_000)]
    raw = json.dumps(_groups("l1", emoji), ensure_ascii=False).encode()
    p.produce(topics.LEARNER_GROUPS, raw, key=b"acme/l1")
    p.produce(topics.LEARNER_GROUPS, _groups("l2", ["red"]))
    p.flow()
    [letter] = p.dead_letters()
    assert letter["reason"] == "invalid" and "teams and roles take more" in letter["detail"]
    p.produce(topics.ATTEMPT_DELETIONS, deletion("acme", "r1", "preview", p.now, teams=["red"]))
    p.flow()
    p.settle()
    assert p.receipts("r1")[0]["learners_affected"] == 1


def test_a_learner_groups_record_under_another_learners_key_is_dead_lettered() -> None:
    """learner-groups is compacted by `{tenant_id}/{learner_id}`: a record under another key
    would outlive the learner's later records and its tombstone (as a license under another
    key would), so a later team deletion could erase a learner the LMS took out of the team."""
    p = Pipeline(partitions=1)
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-02-10T10:00:00Z"))
    p.produce(topics.LEARNER_GROUPS, _groups("l1", ["red"]), key=b"acme/l2")
    p.flow()
    [letter] = p.dead_letters()
    assert letter["reason"] == "invalid" and "key" in letter["detail"]
    p.produce(topics.ATTEMPT_DELETIONS, deletion("acme", "r1", "preview", p.now, teams=["red"]))
    p.flow()
    p.settle()
    assert p.receipts("r1")[0]["learners_affected"] == 0


# -- attempt-deletions ----------------------------------------------------------------------------
def test_a_deletion_request_whose_tenant_id_has_a_control_character_is_dead_lettered() -> None:
    """CONTRACT: only a request with a usable request_id and tenant_id gets an error receipt. A
    tenant id with a control character is no tenant id: the receipt went out (and was stored)
    under it."""
    p = Pipeline(partitions=1)
    bad = {"request_id": "r1", "tenant_id": "ac\x00me", "mode": "preview", "requested_at": "x"}
    p.produce(topics.ATTEMPT_DELETIONS, bad, key=b"acme")
    p.flow()
    assert p.receipts("r1") == []
    [letter] = p.dead_letters()
    assert letter["reason"] == "invalid" and letter["source"]["topic"] == topics.ATTEMPT_DELETIONS


# -- licenses -------------------------------------------------------------------------------------
def test_a_license_in_the_machines_local_time_zone_is_dead_lettered() -> None:
    """`localtime` opens /etc/localtime: each worker would cut the tenant's windows at the
    midnight of the machine it runs on. It is no IANA name."""
    p = Pipeline(partitions=1)
    p.produce(topics.LICENSES, license_("acme", timezone="localtime"))
    p.flow()
    [letter] = p.dead_letters()
    assert letter["reason"] == "invalid" and "timezone" in letter["detail"]


# -- timestamps -----------------------------------------------------------------------------------
def test_a_launch_in_a_leap_second_is_counted_in_the_window_it_ends() -> None:
    """RFC 3339 writes a leap second as 23:59:60 UTC (or its local equivalent); the model
    refused it, so the learner went uncounted. It counts in the window of the day it ends."""
    p = Pipeline(partitions=1)
    p.produce(topics.LICENSES, license_("acme", cycle_start="2016-01-01"))
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2016-12-31T23:59:60Z"))
    p.produce(topics.LAUNCHES, launch("acme", "l2", "a1", "2016-12-31T15:59:60.5-08:00"))
    p.produce(topics.LAUNCHES, launch("acme", "l3", "a1", "2026-03-01T10:00:60Z"))  # not one
    p.flow()
    p.settle()
    assert p.active("acme", "2016-01-01") == 2
    assert p.active("acme", "2017-01-01") is None
    [letter] = p.dead_letters()
    assert letter["reason"] == "invalid" and '"l3"' in letter["raw"]
    assert p.check() == []


def test_records_whose_kafka_timestamp_is_before_the_year_1_are_answered() -> None:
    """Kafka 4.1 takes a producer's timestamp of -100,000,000,000,000 ms (the year -1199). The
    ingest stage turned it into a datetime to decide `future`: a ValueError, and the launch
    reader read its batch again for good (no launch of the partition was counted any more); a
    deletion request with it was given up with the error."""
    p = Pipeline(partitions=1)
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-03-10T10:00:00Z"))
    normal = p.world.clock_ms
    p.world.clock_ms = -(10**14)  # the records' Kafka timestamps
    p.produce(topics.LAUNCHES, launch("acme", "l2", "a1", "2026-03-10T10:00:00Z"))
    p.produce(topics.ATTEMPT_DELETIONS, deletion("acme", "r1", "physical", NOW, learner_ids=["l1"]))
    p.world.clock_ms = normal
    p.produce(topics.LAUNCHES, launch("acme", "l3", "a1", "2026-03-10T10:00:00Z"))
    p.settle()
    assert p.world.gave_up == []
    [letter] = p.dead_letters()
    assert letter["reason"] == "future" and '"l2"' in letter["raw"]  # the contract's rule
    assert p.active("acme", JAN) == 2  # l1 and l3: the partition goes on
    [receipt] = p.receipts("r1")
    assert "in the future" in receipt["error"] and receipt["attempts_affected"] == 0


def test_a_kafka_timestamp_after_the_year_9999_decides_nothing_is_future() -> None:
    p = Pipeline(partitions=1)
    p.world.clock_ms = 10**17  # a broker configured to take it (4.1 refuses it by default)
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-03-10T10:00:00Z"))
    p.world.clock_ms = int(NOW.timestamp() * 1000)
    p.settle()
    assert p.world.gave_up == [] and p.dead_letters() == []
    assert p.active("acme", JAN) == 1
