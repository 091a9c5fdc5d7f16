"""Ingest's routing of a fetched batch of launches: per-launch rules, per-partition commands;
and how a deletion request is split into parts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from streams.domain.learners import TrackedAttempt
from streams.domain.partitioning import learner_partition, partition_for
from streams.stages.ingest import COMMAND_MAX_BYTES, RAW_INLINE_MAX, route_launches

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    partition: int = 0
    offset: int = 0
    timestamp: int = int(NOW.timestamp() * 1000)  # the record's Kafka timestamp: "now" for it
    topic: str = "launches"


def launch(n: int, **changes: object) -> bytes:
    value = {
        "event_id": f"e{n}",
        "tenant_id": "acme",
        "learner_id": f"l{n % 7}",
        "element_id": "course",
        "attempt_id": f"a{n}",
        "launched_at": "2026-03-01T10:00:00Z",
        "content_type": "scorm",
        **changes,
    }
    return json.dumps(value).encode()


def test_every_launch_gets_its_rule() -> None:
    records = [
        Record(b"k", launch(1), offset=0),
        Record(b"k", b"not json", offset=1),
        Record(b"k", launch(2, launched_at="2026-11-28T14:00:00Z"), offset=2),  # future
        Record(b"k", launch(3, launched_by="admin"), offset=3),  # untracked
        Record(b"k", launch(4, content_type="video", tracking="none"), offset=4),  # untracked
        Record(b"k", launch(5, content_type="video"), offset=5),
    ]
    routed = route_launches(records, partitions=12)
    assert routed.outcomes == {"tracked": 2, "dead_lettered": 2, "untracked": 2}
    assert [(d.record.offset, d.rejected.reason) for d in routed.dead_letters] == [
        (1, "invalid"),
        (2, "future"),
    ]
    rows = [row for rows in routed.rows.values() for row in rows]
    items = [TrackedAttempt._make(row) for row in rows]
    assert sorted(item.source_offset for item in items) == [0, 5]
    for partition, part_rows in routed.rows.items():
        for row in part_rows:
            assert learner_partition(row[0], row[1], 12) == partition


def test_launches_keep_their_order_within_a_partition() -> None:
    records = [Record(None, launch(n, learner_id="same"), offset=n) for n in range(50)]
    routed = route_launches(records, partitions=12)
    [(_, rows)] = routed.rows.items()
    assert [row[6] for row in rows] == list(range(50))


def test_large_launches_travel_by_reference_and_commands_stay_small() -> None:
    padding = "x" * 200_000  # an unknown extra field: valid, ignored, but large
    records = [
        Record(None, launch(n, learner_id="same", padding=padding), offset=n) for n in range(20)
    ]
    routed = route_launches(records, partitions=12)
    commands = list(routed.commands())
    assert all(row[7] is None for _, rows in commands for row in rows)
    small = route_launches([Record(None, launch(1))], partitions=12)
    [(_, [row])] = small.rows.items()
    assert row[7] is not None and len(row[7]) <= RAW_INLINE_MAX
    many = route_launches(
        [Record(None, launch(n, learner_id="same"), offset=n) for n in range(5000)], 12
    )
    sizes = [len(json.dumps(rows)) for _, rows in many.commands()]
    assert len(sizes) > 1 and max(sizes) < COMMAND_MAX_BYTES * 1.2


def test_partitioning_is_stable_and_spread() -> None:
    assert partition_for(b"acme/l1", 12) == partition_for(b"acme/l1", 12)
    used = {learner_partition("acme", f"l{n}", 12) for n in range(200)}
    assert used == set(range(12))


def test_future_is_decided_by_the_record_timestamp_not_the_wall_clock() -> None:
    # launched at 14:00: more than an hour after a record written at 12:00, not after one
    # written at 13:30; the same record decides the same on every replay, at any wall clock
    at_noon = Record(b"k", launch(1, launched_at="2026-11-28T14:00:00Z"))
    later = Record(
        b"k",
        launch(1, launched_at="2026-11-28T14:00:00Z"),
        timestamp=int(NOW.timestamp() * 1000) + 5_400_000,
    )
    assert route_launches([at_noon], 12).outcomes == {"dead_lettered": 1}
    assert route_launches([later], 12).outcomes == {"tracked": 1}


def test_content_type_and_tracking_are_trimmed_and_compared_without_case() -> None:
    records = [
        Record(b"k", launch(1, content_type=" SCORM ", tracking="none")),  # scorm: tracked
        Record(b"k", launch(2, content_type="video", tracking=" None ")),  # untracked
        Record(b"k", launch(3, content_type="video", tracking="NONE_RESOURCE")),  # untracked
        Record(b"k", launch(4, content_type=" Video ", tracking=" Tracked ")),  # tracked
    ]
    routed = route_launches(records, partitions=12)
    assert routed.outcomes == {"tracked": 2, "untracked": 2}
    assert routed.dead_letters == []


def test_team_and_role_deletions_go_to_every_partition() -> None:
    from streams.stages.tenant_deletions import deletion_parts

    request = {
        "request_id": "r",
        "tenant_id": "acme",
        "mode": "physical",
        "requested_at": "2026-05-01T00:00:00+00:00",
        "selector": {"kind": "teams", "values": ["sales", "support"]},
    }
    parts = deletion_parts(request, partitions=4)
    assert [partition for _, partition in parts] == [0, 1, 2, 3]
    assert all(p.parts == 4 for p, _ in parts)
    assert parts[0][0].selector == {
        "teams": ["sales", "support"],
        "before": "2026-05-01T00:00:00+00:00",
    }


def test_every_partition_runs_a_part_of_a_request_naming_learners() -> None:
    # the receipt is then a function of the parts alone (each reports its partition's counts)
    from streams.stages.tenant_deletions import deletion_parts

    request = {
        "request_id": "r",
        "tenant_id": "acme",
        "mode": "preview",
        "requested_at": "2026-05-01T00:00:00+00:00",
        "selector": {"kind": "learner_ids", "values": ["l1"]},
    }
    parts = deletion_parts(request, partitions=4)
    assert sorted(partition for _, partition in parts) == [0, 1, 2, 3]
    named = [p.selector["learner_ids"] for p, _ in parts]
    assert sorted(named, key=len) == [[], [], [], ["l1"]]


def test_learner_keys_of_group_tombstones() -> None:
    from streams.stages.ingest import learner_key_ids

    assert learner_key_ids(b"acme/l1") == ("acme", "l1")
    for bad in (None, b"", b"acme", b"acme/l1/x", b"/l1", b"acme/", b"\xff/l1"):
        assert learner_key_ids(bad) is None
