"""A review of the `notify` lists kept apart from the window records (2026-12-02).

A window's threshold record names its events' lists (`thrn/{tenant}/{name}`), so a list must
be there wherever a record that names it is. The change wrote a record after its lists, but an
owner answering a deposed owner's records writes each key they touched again with its own
value, a tombstone where it has none: the deposed owner's list, which a restore from the
changelog's start keeps along with the deposed owner's record naming it (they landed before
this owner's takeover record), was tombstoned first and that record written again after it. A
crash landing only the tombstone left every later restore a record naming a list it lacked,
and every takeover raised at `take_over_outputs`: the tenant partition stalled for good. A
list's name is a hash of its content, so a deposed owner's record of a list is right whatever
its epoch: the repair keeps it.

The record went after its lists by being moved behind every write of the batch so far, also
behind the deletion of an older version's one record of the tenant that it was split from: a
crash landing that deletion and not the record lost the window's crossings. Now a flush sends
the tenant-state records in ranks (`keys.CHANGELOG_ORDER`): lists and events not yet confirmed
sent first (they depend on nothing; kept in its place, the record had also gone ahead of a
later event of its batch), an older version's record last, the rest in first-write order.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import orjson
import pytest

from schemas import topics
from streams.domain.thresholds import notify_name
from streams.stages import keys
from streams.stages.batch import DurableBatch, take_over
from streams.stages.memory import CLEANED, MemoryState, MemoryStore, never_deposed, present
from streams.stages.ownership import Ownership
from streams.stages.store import (
    NO_EPOCH,
    TENANT,
    Pair,
    TopicPartition,
    epoch_header,
    restore_rule,
)
from streams.stages.tenants import TenantStage
from tests.stages.pipeline import Pipeline, launch, license_

CHANGELOG = topics.TENANT_STATE_CHANGELOG
OPS = ["ops@acme.example"]
START = "2026-03-01"
EVENT = {
    "event_id": "e-50-up-1",
    "tenant_id": "acme",
    "window": {"start": START, "end": "2026-04-01", "months": 1},
    "threshold_pct": 50,
    "threshold_learners": 1,
    "direction": "up",
    "active_learners": 1,
    "learner_limit": 2,
    "notify": OPS,
    "occurred_at": "2026-03-10T10:00:00+00:00",
}
NOW = datetime(2026, 3, 10, 11, tzinfo=UTC)


def window_record() -> dict[str, object]:
    kept = {field: value for field, value in EVENT.items() if field != "tenant_id"}
    event = {**kept, "notify": notify_name(OPS)}
    return {"pcts": {"50": {"above": True, "crossings": 1, "event": event}}}


class Crash(Exception):
    pass


def tenant_batch(store_state: MemoryState, log: object, ownership: Ownership) -> DurableBatch:
    return DurableBatch(
        store_state,
        log,  # type: ignore[arg-type]
        ownership,
        TenantStage(1).repair_outputs,
        outputs_first=False,
    )


def restored(log: object) -> MemoryState:
    """A state folder restored from the changelog's start (a new worker, or a wiped folder)."""
    state = MemoryState()
    records = log.records(CHANGELOG, 0)  # type: ignore[attr-defined]
    writes, fence = restore_rule(
        present(records), NO_EPOCH, functools.partial(state.get_many, keys.TENANT_STATE, 0)
    )
    state.apply(keys.TENANT_STATE, 0, writes, len(records) - 1, fence)
    return state


def test_a_deposed_owners_list_survives_a_repair_cut_short_by_a_crash() -> None:
    store = MemoryStore(partitions=1)
    # owner (1, 1)'s takeover record; the new owner restored it and nothing after
    first = [(keys.EPOCH, orjson.dumps([1, 1]))]
    store.log.append(CHANGELOG, 0, first, epoch_header((1, 1)))
    store.state.apply(keys.TENANT_STATE, 0, dict(first), 0, (1, 1))
    # the deposed owner's evaluation lands before the new owner's takeover record: its list,
    # then the window record naming it (a restore from the start takes both)
    late = [
        (keys.threshold_notify("acme", notify_name(OPS)), orjson.dumps(OPS)),
        (keys.window_thresholds("acme", START), orjson.dumps(window_record())),
    ]
    store.log.append(CHANGELOG, 0, late, epoch_header((1, 1)))

    # the new owner's takeover: its first flush finds them, and its repair's send lands only
    # its first record before the worker dies
    send = store.log.send
    changelog_sends = 0

    async def dying_send(
        groups: Mapping[TopicPartition, Sequence[Pair]],
        headers: Mapping[TopicPartition, object] | None = None,
    ) -> dict[TopicPartition, tuple[int, int]]:
        nonlocal changelog_sends
        if (CHANGELOG, 0) in groups:
            changelog_sends += 1
            if changelog_sends == 2:
                pairs = groups[(CHANGELOG, 0)][:1]
                store.log.append(CHANGELOG, 0, pairs, (headers or {})[(CHANGELOG, 0)])  # type: ignore[arg-type]
                raise Crash
        return await send(groups, headers)  # type: ignore[arg-type]

    store.log.send = dying_send  # type: ignore[method-assign]
    batch = tenant_batch(store.state, store.log, store.ownership)
    with pytest.raises(Crash):
        asyncio.run(take_over(batch, TENANT, [0], generation=3, still_member=never_deposed))
    store.log.send = send  # type: ignore[method-assign]

    # the next owner restores from the changelog's start and takes the partition over
    state = restored(store.log)
    batch = tenant_batch(state, store.log, Ownership())
    asyncio.run(take_over(batch, TENANT, [0], generation=4, still_member=never_deposed))
    asyncio.run(batch.repair_marked(TENANT, [0]))
    asyncio.run(TenantStage(1).take_over_outputs(batch, 0, NOW))  # raised LookupError
    events = [orjson.loads(r.value or b"") for r in store.log.records(topics.THRESHOLD_EVENTS, 0)]
    assert events == [EVENT]  # the deposed owner's window record, with its list


def test_a_repair_keeps_a_deposed_owners_list_and_drops_its_record() -> None:
    """Without a crash: the deposed owner's record of the window goes (this owner has none),
    its list stays (unnamed: a list is never deleted)."""
    store = MemoryStore(partitions=1)
    first = [(keys.EPOCH, orjson.dumps([1, 1]))]
    store.log.append(CHANGELOG, 0, first, epoch_header((1, 1)))
    store.state.apply(keys.TENANT_STATE, 0, dict(first), 0, (1, 1))
    name = keys.threshold_notify("acme", notify_name(OPS))
    wrong = keys.threshold_notify("acme", notify_name(["other@acme.example"]))
    late = [
        (name, orjson.dumps(OPS)),
        (wrong, orjson.dumps(OPS)),  # not the list its name says: not kept
        (keys.window_thresholds("acme", START), orjson.dumps(window_record())),
    ]
    store.log.append(CHANGELOG, 0, late, epoch_header((1, 1)))
    batch = tenant_batch(store.state, store.log, store.ownership)
    asyncio.run(take_over(batch, TENANT, [0], generation=3, still_member=never_deposed))
    latest = store.log.latest(CHANGELOG)
    assert latest.get(name) == orjson.dumps(OPS)
    assert wrong not in latest
    assert keys.window_thresholds("acme", START) not in latest
    assert store.state.get_many(keys.TENANT_STATE, 0, [name, wrong]) == [orjson.dumps(OPS), None]


def test_a_list_whose_rightful_record_the_cleaner_removed_is_kept_from_the_late_one() -> None:
    """Kafka's cleaner removed the owner's record of a list that a deposed owner's late record
    of the same list superseded (no worker ran for a day: docs/architecture.md, "What Kafka
    removes"); a restore skips the late record and marks the key. The window record naming the
    list is the owner's and stays, so writing the marked key again as a tombstone stalled every
    takeover (LookupError); the late record's list is the list itself, and is kept."""
    store = MemoryStore(partitions=1)
    name = keys.threshold_notify("acme", notify_name(OPS))
    record = (keys.window_thresholds("acme", START), orjson.dumps(window_record()))
    store.log.append(CHANGELOG, 0, [(keys.EPOCH, orjson.dumps([1, 1]))], epoch_header((1, 1)))
    store.log.append(CHANGELOG, 0, [(name, orjson.dumps(OPS)), record], epoch_header((1, 1)))
    # the owner of (2, 3) writes the window's record again (another threshold's state changed)
    store.log.append(
        CHANGELOG, 0, [(keys.EPOCH, orjson.dumps([2, 3])), record], epoch_header((2, 3))
    )
    store.log.append(CHANGELOG, 0, [(name, orjson.dumps(OPS))], epoch_header((1, 1)))  # late
    store.log.records(CHANGELOG, 0)[1] = CLEANED  # superseded, for the cleaner

    state = restored(store.log)
    assert set(state.repairs(keys.TENANT_STATE, 0)) == {name}
    batch = tenant_batch(state, store.log, Ownership())
    asyncio.run(take_over(batch, TENANT, [0], generation=4, still_member=never_deposed))
    asyncio.run(batch.repair_marked(TENANT, [0]))
    asyncio.run(TenantStage(1).take_over_outputs(batch, 0, NOW))  # raised LookupError
    events = [orjson.loads(r.value or b"") for r in store.log.records(topics.THRESHOLD_EVENTS, 0)]
    assert events == [EVENT]
    assert store.log.latest(CHANGELOG)[name] == orjson.dumps(OPS)


def test_a_crash_splitting_an_older_versions_record_loses_no_window_record() -> None:
    """The split of an older version's one record of a tenant writes each window's record,
    then deletes the old one; a crossing in the same evaluation writes the window's record
    again. Put `last` (moved after every write so far), that record went after the deletion:
    a crash landing the deletion and not the record lost the window's crossings for good (its
    replay found neither), and the replay numbered the next crossing 1 again, an event id the
    old record's first crossing had, with other content."""
    p = Pipeline(partitions=1)
    lic = license_("acme", cycle_start="2026-01-01", learner_limit=2, thresholds=[50, 100])
    p.produce(topics.LICENSES, lic)
    p.produce(topics.LAUNCHES, launch("acme", "l0", "a", "2026-02-10T10:00:00Z"))
    p.settle()
    [first] = p.events("acme")  # 50 %: up
    state = p.worker("w0").state.partition(keys.TENANT_STATE, 0)
    window_key = keys.window_thresholds("acme", "2026-01-01")
    record = orjson.loads(state.rows.pop(window_key))
    legacy = {
        "windows": {
            "2026-01-01": {
                # 50 % crossed up, down and up again
                pct: {**entry, "crossings": 3, "event": first} if entry.get("event") else entry
                for pct, entry in record["pcts"].items()
            }
        },
        "pending": [],
    }
    state.write({keys.thresholds("acme"): orjson.dumps(legacy)})
    p.restart("w0")  # the next publication splits the record

    def through_the_deletion(tp: TopicPartition, records: Sequence[Pair]) -> int:
        if tp[0] != topics.TENANT_STATE_CHANGELOG:
            return 0
        written = [key for key, _ in records]  # (key, value) pairs, as the send has them
        return written.index(keys.thresholds("acme")) + 1

    p.produce(topics.LAUNCHES, launch("acme", "l1", "a", "2026-02-11T10:00:00Z"))
    for task in (topics.LAUNCHES, topics.LEARNER_COMMANDS, "partials"):
        p.run(task)
    p.crash_at("w0", "send", topics.TENANT_COMMANDS, landing=through_the_deletion)  # type: ignore[arg-type]
    p.run(topics.TENANT_COMMANDS)
    assert not p.worker().alive
    p.restart()
    p.flow()
    p.settle()

    assert orjson.loads(state.rows[window_key])["pcts"]["50"]["crossings"] == 3
    again = [e for e in p.events("acme") if e["event_id"] == first["event_id"]]
    assert all(e == first for e in again)
    assert [(e["threshold_pct"], e["direction"]) for e in p.events("acme")][-1] == (100, "up")
    assert p.check() == []


def test_a_crash_landing_a_window_record_lands_every_event_of_its_batch_before_it() -> None:
    """Three crossings of one threshold in one batch (license flaps): the window's record is
    first written with the first and keeps that place, so each later event not yet confirmed
    sent goes ahead of it; a crash landing the record and not the middle event lost that alert
    (the record's last event is the third, the first is pending; the change's `last` had
    closed that, moving the lists ahead instead reopened it until the events moved too)."""
    p = Pipeline(partitions=1)

    def limit(learners: int) -> dict[str, object]:
        return license_("acme", cycle_start="2026-01-01", learner_limit=learners, thresholds=[100])

    p.produce(topics.LICENSES, limit(2))
    for learner in ("l0", "l1"):
        p.produce(topics.LAUNCHES, launch("acme", learner, "a", "2026-02-10T10:00:00Z"))
    p.settle()
    for learners in (4, 2, 4):  # down, up, down
        p.produce(topics.LICENSES, limit(learners))
    p.run(topics.LICENSES)

    def through_the_record(tp: TopicPartition, records: Sequence[Pair]) -> int:
        if tp[0] != topics.TENANT_STATE_CHANGELOG:
            return 0
        written = [key for key, _ in records]  # (key, value) pairs, as the send has them
        return written.index(keys.window_thresholds("acme", "2026-01-01")) + 1

    p.crash_at("w0", "send", topics.TENANT_COMMANDS, landing=through_the_record)  # type: ignore[arg-type]
    p.run(topics.TENANT_COMMANDS)
    assert not p.worker().alive
    p.restart()
    p.flow()
    p.settle()
    distinct = list({e["event_id"]: e for e in p.events("acme")}.values())
    assert [(e["direction"], e["learner_limit"]) for e in distinct] == [
        ("up", 2),
        ("down", 4),
        ("up", 2),
        ("down", 4),
    ]
    assert p.check() == []
