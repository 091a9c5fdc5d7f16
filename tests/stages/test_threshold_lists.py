"""A window's threshold record names its events' `notify` lists; each list is a record of its own.

Until 2026-12-02 a window's record kept the lists in a table of its own: some 30 licenses with
long lists crossing thresholds in one window outgrew a record (tests/stages/
test_threshold_bounds.py). Now a list is stored under a hash of its content and the record
names it, so two things must hold: a crash that lands only the first records of a changelog
send never leaves a record naming a list that is not there (the record goes after its lists),
and a record an earlier version wrote (lists in a table) is read as it is and written anew.
"""

from __future__ import annotations

import asyncio

import orjson

from schemas import topics
from streams.domain.thresholds import notify_name
from streams.stages import keys
from streams.stages.batch import DurableBatch
from streams.stages.memory import MemoryLog, MemoryState
from streams.stages.ownership import Ownership
from tests.stages.pipeline import Pipeline, launch, license_

OPS = ["ops@acme.example"]
BILLING = ["billing@acme.example", "cfo@acme.example"]


def test_a_flush_sends_what_other_records_name_first_and_an_older_record_last() -> None:
    """A crash may land only the first records of a changelog send: the tenant-state records
    nothing depends on (lists, events not yet confirmed sent) go first, an older version's one
    threshold record of a tenant (deleted once split) last, the rest in first-write order."""
    state, log = MemoryState(), MemoryLog(1)
    ownership = Ownership()
    ownership.claim("tenant", 0, (1, 0))
    ownership.claim("learner", 0, (1, 0))
    batch = DurableBatch(state, log, ownership)
    table = keys.TENANT_STATE
    window = keys.window_thresholds("acme", "2026-01-01")
    batch.put(table, 0, window, {"v": 1})
    batch.delete(table, 0, keys.thresholds("acme"))
    batch.put(table, 0, keys.published("acme"), {"p": 1})
    batch.put(table, 0, keys.threshold_notify("acme", "a"), ["a"])
    pending = keys.pending_threshold_event("acme", "2026-01-01", 50, 2)
    batch.put(table, 0, pending, {"e": 2})
    mark = batch.savepoint()
    batch.put(table, 0, keys.threshold_notify("acme", "c"), ["c"])
    batch.rollback(mark)  # a failed event's list goes
    batch.put(table, 0, window, {"v": 2})
    # another table keeps the order of first writes
    batch.put(keys.LEARNER_STATE, 0, b"m/acme/l1", {"w": 1})
    batch.put(keys.LEARNER_STATE, 0, b"lic/acme", {"license": None})
    asyncio.run(batch.flush())
    sent = [
        (r.key, r.value and orjson.loads(r.value))
        for r in log.records(topics.TENANT_STATE_CHANGELOG, 0)
    ]
    assert sent == [
        (keys.threshold_notify("acme", "a"), ["a"]),
        (pending, {"e": 2}),
        (window, {"v": 2}),
        (keys.published("acme"), {"p": 1}),
        (keys.thresholds("acme"), None),
    ]
    learner = [r.key for r in log.records(topics.LEARNER_STATE_CHANGELOG, 0)]
    assert learner == [b"m/acme/l1", b"lic/acme"]


def tenant_state(p: Pipeline) -> dict[bytes, object]:
    rows = p.worker("w0").state.partition(keys.TENANT_STATE, 0).rows
    return {key: orjson.loads(value) for key, value in rows.items()}


def test_each_list_is_stored_once_by_name_and_the_record_names_it() -> None:
    p = Pipeline(partitions=1)
    p.produce(
        topics.LICENSES,
        license_("acme", window_months=1, learner_limit=4, thresholds=[25, 50], notify=OPS),
    )
    p.produce(topics.LAUNCHES, launch("acme", "l0", "a", "2026-03-10T10:00:00Z"))
    p.settle()
    p.produce(
        topics.LICENSES,
        license_("acme", window_months=1, learner_limit=4, thresholds=[25, 50], notify=BILLING),
    )
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a", "2026-03-11T10:00:00Z"))
    p.settle()

    assert [(e["threshold_pct"], e["notify"]) for e in p.events("acme")] == [
        (25, OPS),
        (50, BILLING),
    ]
    state = tenant_state(p)
    record = state[keys.window_thresholds("acme", "2026-03-01")]
    assert record == {
        "pcts": {
            "25": {"above": True, "crossings": 1, "event": record["pcts"]["25"]["event"]},
            "50": {"above": True, "crossings": 1, "event": record["pcts"]["50"]["event"]},
        }
    }
    assert record["pcts"]["25"]["event"]["notify"] == notify_name(OPS)
    assert record["pcts"]["50"]["event"]["notify"] == notify_name(BILLING)
    lists = {key: value for key, value in state.items() if key.startswith(b"thrn/")}
    assert lists == {
        keys.threshold_notify("acme", notify_name(OPS)): OPS,
        keys.threshold_notify("acme", notify_name(BILLING)): BILLING,
    }
    assert p.check() == []


def test_a_record_an_earlier_version_wrote_is_read_and_written_anew() -> None:
    """The record as an earlier version left it (lists in a table, named by index): a takeover
    sends its last events again identical, and the tenant's next evaluation writes it in this
    version's form, its lists stored by name."""
    p = Pipeline(partitions=1)
    p.produce(
        topics.LICENSES,
        license_("acme", window_months=1, learner_limit=2, thresholds=[50, 100], notify=OPS),
    )
    p.produce(topics.LAUNCHES, launch("acme", "l0", "a", "2026-03-10T10:00:00Z"))
    p.settle()
    [first] = p.events("acme")
    rows = p.worker("w0").state.partition(keys.TENANT_STATE, 0)
    key = keys.window_thresholds("acme", "2026-03-01")
    record = orjson.loads(rows.rows[key])
    earlier = {
        "notify": [OPS],
        "pcts": {
            pct: {**entry, "event": {**entry["event"], "notify": 0}}
            if entry.get("event")
            else entry
            for pct, entry in record["pcts"].items()
        },
    }
    for name in list(rows.rows):
        if name.startswith(b"thrn/"):
            del rows.rows[name]
    rows.write({key: orjson.dumps(earlier)})

    p.restart("w0")  # the takeover reads the table (the list is not stored by name yet)
    p.settle()
    again = [e for e in p.events("acme") if e["event_id"] == first["event_id"]]
    assert len(again) >= 2 and all(e == first for e in again)
    state = tenant_state(p)  # the tenant's next evaluation wrote the record in this form
    assert state[key] == record
    assert state[keys.threshold_notify("acme", notify_name(OPS))] == OPS

    p.produce(topics.LAUNCHES, launch("acme", "l1", "a", "2026-03-11T10:00:00Z"))
    p.settle()
    assert [(e["threshold_pct"], e["notify"]) for e in p.events("acme")][-1] == (100, OPS)
    p.restart("w0")  # and its last events are sent from the new form, identical
    p.settle()
    last = [e for e in p.events("acme") if e["event_id"] == first["event_id"]][-1]
    assert last == first
    assert p.check() == []
