"""A deposed tenant owner's outputs that land after its successor took over.

Count records, threshold events and deletion receipts are written by the tenant partition's
owner alone (`FENCED_OUTPUTS`). A deposed owner that does not know it yet may still send some
after its successor's takeover: the successor's next write to that topic partition, or its
periodic lineage check, finds them (an older epoch in their headers) and answers each with its
own truth (`TenantStage.repair_outputs`), so that the last record of every count key is the
successor's and a receipt or an event the deposed owner sent is sent again as the successor
stored it.

The simulator almost never gets there: a coverage run of 5,000 seeds (2026-12-04) reached the
answer for a count record in one seed and for a threshold event in none, because a deposed owner
must apply a tick or partial counts and publish within its few steps after the takeover. These
tests put such records in the log by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson

from schemas import topics
from streams.domain.thresholds import kept_event, notify_name
from streams.stages import keys
from streams.stages.batch import take_over
from streams.stages.memory import MemoryStore, never_deposed
from streams.stages.store import TENANT, epoch_header
from streams.stages.tenants import TenantStage, _fingerprint_of

CHANGELOG = topics.TENANT_STATE_CHANGELOG
COUNTS = topics.ACTIVE_LEARNER_COUNTS
PUBLISHED = {"cut": "1970-01-01/12/UTC", "license": None, "windows": {"2026-01-01": [2, 3]}}
DEPOSED, SUCCESSOR = (1, 1), (2, 3)


def taken_over(extra: Sequence[tuple[bytes, bytes]] = ()) -> MemoryStore:
    """A tenant partition 0 restored from owner (1, 1)'s changelog (what it published for
    `acme`, and `extra` rows), then taken over by owner (2, 3)."""
    store = MemoryStore(partitions=1)
    rows = [
        (keys.EPOCH, orjson.dumps(list(DEPOSED))),
        (keys.published("acme"), orjson.dumps(PUBLISHED)),
        *extra,
    ]
    store.log.append(CHANGELOG, 0, rows, epoch_header(DEPOSED))
    store.state.apply(keys.TENANT_STATE, 0, dict(rows), len(rows) - 1, DEPOSED)
    batch = store.batch(TenantStage(1).repair_outputs)
    asyncio.run(take_over(batch, TENANT, [0], generation=3, still_member=never_deposed))
    return store


def land_late(store: MemoryStore, topic: str, key: bytes, *values: bytes) -> None:
    """The deposed owner's records land now, after the takeover, then the successor checks."""
    for value in values:
        store.log.append(topic, 0, [(key, value)], epoch_header(DEPOSED))
    batch = store.batch(TenantStage(1).repair_outputs)
    asyncio.run(batch.check_lineage(TENANT, [0]))


def last_of(store: MemoryStore, topic: str, key: bytes) -> tuple[object, bytes | None]:
    record = [r for r in store.log.records(topic, 0) if r.key == key][-1]
    return record.epoch, record.value


def test_a_late_count_record_is_answered_with_the_successors_count() -> None:
    store = taken_over()
    key = keys.count_record("acme", "2026-01-01")
    land_late(store, COUNTS, key, b'{"tenant_id": "acme", "active_learners": 7}')
    epoch, value = last_of(store, COUNTS, key)
    assert epoch == SUCCESSOR
    record = orjson.loads(value or b"")
    assert (record["tenant_id"], record["active_learners"]) == ("acme", 2)
    assert record["window"]["start"].startswith("2026-01-01")
    assert store.ownership.zombies_repaired == 1


def test_a_late_count_record_of_a_window_the_successor_never_published_is_tombstoned() -> None:
    store = taken_over()
    key = keys.count_record("acme", "2025-01-01")
    land_late(store, COUNTS, key, b'{"tenant_id": "acme", "active_learners": 1}')
    assert last_of(store, COUNTS, key) == (SUCCESSOR, None)


def test_a_late_count_record_of_a_tenant_the_successor_has_not_published_stays_for_it() -> None:
    """Nothing published for the tenant here yet: the successor publishes the tenant's
    windows when it gets there (its first tick), and sends nothing now."""
    store = taken_over()
    key = keys.count_record("zeta", "2026-01-01")
    land_late(store, COUNTS, key, b'{"tenant_id": "zeta", "active_learners": 1}')
    epoch, _ = last_of(store, COUNTS, key)
    assert epoch == DEPOSED
    assert store.ownership.zombies_repaired == 1


def test_a_late_receipt_is_sent_again_as_the_successor_stored_it() -> None:
    receipt = {
        "request_id": "r1",
        "tenant_id": "acme",
        "mode": "physical",
        "attempts_affected": 4,
        "learners_affected": 2,
    }
    request = {"request_id": "r1", "tenant_id": "acme", "selector": {"kind": "learner_ids"}}
    stored = {"request": request, "receipt": receipt}
    store = taken_over([(keys.deletion("acme", "r1"), orjson.dumps(stored))])
    late = {**receipt, "attempts_affected": 9}
    land_late(store, topics.DELETION_RECEIPTS, b"acme", orjson.dumps(late))
    epoch, value = last_of(store, topics.DELETION_RECEIPTS, b"acme")
    assert epoch == SUCCESSOR
    sent = orjson.loads(value or b"")
    assert sent["attempts_affected"] == 4
    assert sent["selector"] == request["selector"], "the receipt whole, with its selector"


def test_a_late_receipt_of_a_request_the_successor_never_stored_is_left() -> None:
    store = taken_over()
    late = {"request_id": "r9", "tenant_id": "acme", "mode": "physical"}
    land_late(store, topics.DELETION_RECEIPTS, b"acme", orjson.dumps(late))
    epoch, _ = last_of(store, topics.DELETION_RECEIPTS, b"acme")
    assert epoch == DEPOSED
    assert store.ownership.zombies_repaired == 1


# a threshold event as the tenant stage sends it, and as its window's record keeps it
EVENT = {
    "event_id": "acme/2026-01-01/80/1",
    "tenant_id": "acme",
    "window": {"start": "2026-01-01", "end": "2027-01-01", "months": 12},
    "threshold_pct": 80,
    "threshold_learners": 8,
    "direction": "up",
    "active_learners": 8,
    "learner_limit": 10,
    "notify": ["admin@example.com"],
    "occurred_at": "2026-02-01T10:00:00+00:00",
}


def with_a_kept_event() -> MemoryStore:
    entry = {"above": True, "crossings": 1, "event": kept_event(EVENT)}
    return taken_over(
        [
            (
                keys.threshold_notify("acme", notify_name(EVENT["notify"])),
                orjson.dumps(EVENT["notify"]),
            ),
            (keys.window_thresholds("acme", "2026-01-01"), orjson.dumps({"pcts": {"80": entry}})),
        ]
    )


def test_a_late_threshold_event_is_sent_again_as_the_successor_kept_it() -> None:
    store = with_a_kept_event()
    late = {**EVENT, "event_id": "other", "notify": ["old@example.com"]}
    land_late(store, topics.THRESHOLD_EVENTS, b"acme", orjson.dumps(late))
    epoch, value = last_of(store, topics.THRESHOLD_EVENTS, b"acme")
    assert epoch == SUCCESSOR
    assert orjson.loads(value or b"") == EVENT, "the event as the successor kept it, whole"


def test_a_late_threshold_event_of_a_threshold_the_successor_never_crossed_is_left() -> None:
    """Events are not taken back (there is no tombstone for one); the successor sends its own
    when its counts cross."""
    store = with_a_kept_event()
    late = {**EVENT, "threshold_pct": 100}
    land_late(store, topics.THRESHOLD_EVENTS, b"acme", orjson.dumps(late))
    epoch, _ = last_of(store, topics.THRESHOLD_EVENTS, b"acme")
    assert epoch == DEPOSED
    assert store.ownership.zombies_repaired == 1


def test_a_late_receipt_brings_the_requests_conflict_receipts_again_too() -> None:
    """Error receipts of other requests sent under the same id, as versions before 2026-12-04
    kept them inside the request (`conflicts`): the deposed owner may have sent one of them
    late, so each goes again (the current form: the test below)."""
    receipt = {"request_id": "r1", "tenant_id": "acme", "mode": "physical"}
    conflict = {"request_id": "r1", "tenant_id": "acme", "error": "the id is taken"}
    request = {"request_id": "r1", "tenant_id": "acme", "selector": {"kind": "learner_ids"}}
    stored = {"request": request, "receipt": receipt, "conflicts": {"f2": conflict}}
    store = taken_over([(keys.deletion("acme", "r1"), orjson.dumps(stored))])
    land_late(store, topics.DELETION_RECEIPTS, b"acme", orjson.dumps(conflict))
    sent = [r for r in store.log.records(topics.DELETION_RECEIPTS, 0) if r.epoch == SUCCESSOR]
    assert [orjson.loads(r.value or b"").get("error") for r in sent] == [None, "the id is taken"]


def conflict(selector: dict[str, object] | None, error: str) -> dict[str, object]:
    at = "2026-03-20T12:00:00+00:00"
    return {"request_id": "r1", "tenant_id": "acme", "mode": "preview", "requested_at": at,
            "selector": selector, "error": error}  # fmt: skip


def test_a_late_conflict_receipt_brings_its_own_kept_receipt_again_once() -> None:
    """Since 2026-12-04 each conflicting request's receipt is a record of its own
    (`delc/{tenant}/{request}/{fingerprint}`), without a bound on how many: a late one brings
    the request's receipt and the one it is again (found by its fingerprint), not every other
    request's under the id; receipts that name no selector (invalid requests': no fingerprint
    to find them by) go again all; an older version's, kept inside the request, all; and each
    once however many late records the pass answers (helper-71's review: 200 conflicts and 50
    late receipts sent 10,050)."""
    receipt = {"request_id": "r1", "tenant_id": "acme", "mode": "physical", "error": None}
    inside = conflict(None, "taken, kept inside")
    named = [conflict({"kind": "learner_ids", "values": [f"l{n}"]}, f"taken {n}") for n in (2, 3)]
    invalid = conflict(None, "no selector")
    request = {"request_id": "r1", "tenant_id": "acme", "selector": {"kind": "learner_ids"}}
    stored = {"request": request, "receipt": receipt, "conflicts": {"f1": inside}}
    # (the fingerprint ingest gives each: tests/stages/test_conflict_fingerprints.py)
    rows = [(keys.deletion("acme", "r1"), orjson.dumps(stored))]
    rows += [
        (keys.deletion_conflict("acme", "r1", str(_fingerprint_of(k))), orjson.dumps(k))
        for k in named
    ]
    rows += [(keys.deletion_conflict("acme", "r1", "f9"), orjson.dumps(invalid))]
    store = taken_over(rows)
    late = orjson.dumps(named[1] | {"completed_at": "the deposed owner's"})
    land_late(store, topics.DELETION_RECEIPTS, b"acme", late, late, orjson.dumps(invalid))
    sent = [r for r in store.log.records(topics.DELETION_RECEIPTS, 0) if r.epoch == SUCCESSOR]
    assert [orjson.loads(r.value or b"").get("error") for r in sent] == [
        None,
        "taken, kept inside",
        "taken 3",
        "no selector",
    ]
