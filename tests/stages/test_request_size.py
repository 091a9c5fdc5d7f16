"""How large a deletion request may be, and what every request gets whatever its size.

The tenant stage stores a request with its receipt, and both echo its selector: the selector is
bounded (SELECTOR_MAX_BYTES), so that no record written for a request outgrows Kafka's limit.
Found on 2026-11-30: a request of 600 KB (2,400 long learner ids, through Kafka or the CLI) got
no receipt, its deletion was applied unreported and its tenant's thresholds stayed held for 15
minutes; and conflicting requests under one request id lost their error receipts once the
stored request kept a few of them whole.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from schemas import topics
from streams.domain.selectors import SELECTOR_MAX_BYTES, Selector
from streams.stages.store import MAX_RECORD_BYTES
from tests.stages.pipeline import Pipeline, deletion, launch, license_

JAN = "2026-01-01"
PARIS = ZoneInfo("Europe/Paris")


def long_ids(prefix: str, count: int) -> list[str]:
    """Learner ids of 206 characters and more that no launch ever named."""
    return [f"{prefix}{n:06d}" + "y" * 200 for n in range(count)]


def ids_of_selector_size(prefix: str, size: int) -> list[str]:
    """`l0`, `l1` and enough long ids for a learner_ids selector of about `size` bytes (less)."""
    named = ["l0", "l1"]
    base = Selector.of("learner_ids", named).json_size()
    each = len(long_ids(prefix, 1)[0]) + 3  # its quotes and a comma
    return named + long_ids(prefix, (size - base) // each)


def largest_record(p: Pipeline) -> tuple[int, str]:
    """The size of the largest record of any topic (changelogs included), with its topic."""
    sizes = [
        (len(record.key or b"") + len(record.value or b""), topic)
        for topic, partitions in p.world.log.topics.items()
        for records in partitions.values()
        for record in records
    ]
    return max(sizes)


def two_learners_over_the_threshold() -> Pipeline:
    p = Pipeline(partitions=2)
    p.produce(topics.LICENSES, license_("acme", learner_limit=4, thresholds=[100]))
    for n in range(4):
        p.produce(topics.LAUNCHES, launch("acme", f"l{n}", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    p.advance(3600)
    return p


def test_a_request_too_large_for_one_record_gets_an_error_receipt_and_changes_nothing() -> None:
    p = two_learners_over_the_threshold()
    ids = ids_of_selector_size("x", 600_000)
    p.produce(topics.ATTEMPT_DELETIONS, deletion("acme", "r1", "physical", p.now, learner_ids=ids))
    p.flow()
    (receipt,) = p.receipts("r1")
    assert (
        receipt["error"].startswith("the selector takes 599,")
        and "split the request" in (receipt["error"])
    )
    assert receipt["attempts_affected"] == 0 and receipt["selector"] is None
    assert p.dead_letters() == [] and p.world.gave_up == []
    assert p.active("acme", JAN) == 4, "nothing was deleted"
    # nothing holds the tenant's thresholds: the next crossing is mailed at once
    p.produce(topics.LICENSES, license_("acme", learner_limit=5, thresholds=[100]))
    p.produce(topics.LAUNCHES, launch("acme", "l4", "a1", "2026-02-11T10:00:00Z"))
    p.flow()
    assert [e["direction"] for e in p.events("acme")][-1:] == ["up"]
    assert p.check() == []


def test_a_request_at_the_limit_is_applied_and_no_record_outgrows_kafkas_limit() -> None:
    p = two_learners_over_the_threshold()
    ids = ids_of_selector_size("x", SELECTOR_MAX_BYTES)
    request = deletion("acme", "r1", "physical", p.now, learner_ids=ids)
    # the longest reason and signature, in characters of four UTF-8 bytes
    request |= {"reason": "\U0001f600" * 1000, "requested_by": "\U0001f600" * 256}
    assert Selector.of("learner_ids", ids).too_large() is None
    p.produce(topics.ATTEMPT_DELETIONS, request)
    p.flow()
    p.settle()
    (receipt,) = p.receipts("r1")
    assert receipt["error"] is None and receipt["attempts_affected"] == 2
    assert receipt["selector"] == Selector.of("learner_ids", ids).as_json()
    assert p.active("acme", JAN) == 2
    # a redelivery is answered with the receipt as it was sent (the request's record keeps the
    # selector once, beside a receipt without it)
    p.produce(topics.ATTEMPT_DELETIONS, request)
    p.flow()
    assert p.receipts("r1") == [receipt, receipt]
    size, topic = largest_record(p)
    assert size < MAX_RECORD_BYTES * 0.7, (size, topic)
    assert p.world.gave_up == [] and p.check() == []


@pytest.mark.parametrize("conflicts_first", [False, True])
def test_a_hundred_conflicting_requests_never_cost_a_receipt(conflicts_first: bool) -> None:
    """A request at the limit, and 100 other requests under its id with the longest reason and
    signature (in characters of four UTF-8 bytes), before it completes or after: every request
    gets its receipt, and no record outgrows Kafka's limit."""
    p = two_learners_over_the_threshold()
    ids = ids_of_selector_size("x", SELECTOR_MAX_BYTES)
    p.produce(topics.ATTEMPT_DELETIONS, deletion("acme", "r1", "physical", p.now, learner_ids=ids))
    if not conflicts_first:
        p.flow()
        p.settle()
    for n in range(100):
        other = deletion(
            "acme", "r1", "preview", p.now - timedelta(seconds=n + 1), learner_ids=["l0"]
        )
        other |= {"reason": "\U0001f600" * 1000, "requested_by": "\U0001f600" * 256}
        p.produce(topics.ATTEMPT_DELETIONS, other)
    p.flow()
    p.settle()
    receipts = p.receipts("r1")
    assert len([r for r in receipts if r["error"] is None]) == 1
    assert len([r for r in receipts if r["error"]]) == 100
    assert p.world.gave_up == [] and p.dead_letters() == []
    assert p.active("acme", JAN) == 2
    size, topic = largest_record(p)
    assert size < MAX_RECORD_BYTES * 0.85, (size, topic)
    assert p.check() == []


def test_a_conflicting_request_gets_the_same_receipt_again() -> None:
    """Redelivered, another request under a used id is answered with its first error receipt,
    also when it writes the same instant with another offset (the same request, by the
    contract)."""
    p = two_learners_over_the_threshold()
    first = deletion("acme", "r1", "preview", p.now, learner_ids=["l0"])
    p.produce(topics.ATTEMPT_DELETIONS, first)
    p.flow()
    other = deletion("acme", "r1", "preview", p.now, learner_ids=["l1"]) | {"reason": "first"}
    p.produce(topics.ATTEMPT_DELETIONS, other)
    p.flow()
    error = p.receipts("r1")[-1]
    assert "already used" in error["error"]
    p.advance(600)
    in_paris = p.now.replace(microsecond=0) - timedelta(seconds=600)
    p.produce(
        topics.ATTEMPT_DELETIONS,
        other | {"requested_at": in_paris.astimezone(PARIS).isoformat()},
    )
    p.flow()
    assert p.receipts("r1")[-1] == error
    assert p.world.gave_up == [] and p.check() == []


def test_every_conflicting_request_gets_the_same_receipt_at_each_redelivery() -> None:
    """Large conflicting requests under one used request id: each gets its error receipt, and
    each redelivery (a new record, a minute later) the very same one, `completed_at` included
    (the contract). Kept inside the request's record, at most 128 KiB of them were, and the
    third 100 KB request's redelivery got a receipt of its own time; each is a record of its
    own now, and the request's record does not grow."""
    from streams.domain.partitioning import tenant_partition
    from streams.stages import keys

    p = two_learners_over_the_threshold()
    first = deletion("acme", "r1", "preview", p.now, learner_ids=["l0"])
    p.produce(topics.ATTEMPT_DELETIONS, first)
    p.flow()
    batch = p.worker().batch(tenant=True)
    partition = tenant_partition("acme", 2)
    before = batch.get(keys.TENANT_STATE, partition, keys.deletion("acme", "r1"))
    conflicting = [
        deletion(
            "acme", "r1", "preview", p.now, learner_ids=ids_of_selector_size(f"c{n}-", 100_000)
        )
        for n in range(4)
    ]
    for _ in range(2):  # each delivered, then each delivered again
        for request in conflicting:
            p.produce(topics.ATTEMPT_DELETIONS, request)
            p.flow()
            p.advance(60)
    errors = [r for r in p.receipts("r1") if r["error"]]
    # (receipts are sent at least once: a duplicate is the same receipt again)
    by_request: dict[str, list[dict[str, Any]]] = {}
    for receipt in errors:
        by_request.setdefault(json.dumps(receipt["selector"]), []).append(receipt)
    assert len(by_request) == 4
    for receipts in by_request.values():
        assert len(receipts) >= 2, "every delivery got an error receipt"
        assert all(r == receipts[0] for r in receipts), "each redelivery the same receipt"
    assert len({r["completed_at"] for r in errors}) == 4
    assert p.world.gave_up == [] and p.dead_letters() == []
    batch = p.worker().batch(tenant=True)
    assert batch.get(keys.TENANT_STATE, partition, keys.deletion("acme", "r1")) == before
    kept = batch.scan(keys.TENANT_STATE, partition, keys.deletion_conflicts("acme", "r1"))
    assert sorted(receipt["completed_at"] for _, receipt in kept) == sorted(
        receipts[0]["completed_at"] for receipts in by_request.values()
    )
    assert p.active("acme", JAN) == 4
    assert largest_record(p)[0] <= MAX_RECORD_BYTES


def test_an_invalid_request_under_a_used_id_gets_the_same_receipt_at_each_redelivery() -> None:
    """An invalid request (two selectors) under a used id: its error receipt is kept apart
    too, and a redelivery a minute later is answered with it (helper-71's review: the
    `on_error` path sending without keeping passed every stage test)."""
    p = two_learners_over_the_threshold()
    p.produce(
        topics.ATTEMPT_DELETIONS, deletion("acme", "r1", "preview", p.now, learner_ids=["l0"])
    )
    p.flow()
    invalid = deletion("acme", "r1", "preview", p.now, learner_ids=["l1"], teams=["red"])
    for _ in range(2):
        p.produce(topics.ATTEMPT_DELETIONS, invalid)
        p.flow()
        p.advance(60)
    errors = [r for r in p.receipts("r1") if r["error"]]
    assert len(errors) >= 2 and all(r == errors[0] for r in errors), errors
    assert errors[0]["error"].startswith("exactly one selector")
    assert p.world.gave_up == [] and p.dead_letters() == []
    from streams.domain.partitioning import tenant_partition
    from streams.stages import keys

    batch = p.worker().batch(tenant=True)
    partition = tenant_partition("acme", 2)
    kept = batch.scan(keys.TENANT_STATE, partition, keys.deletion_conflicts("acme", "r1"))
    assert [receipt for _, receipt in kept] == [errors[0]]
    record = batch.get(keys.TENANT_STATE, partition, keys.deletion("acme", "r1"))
    assert "conflicts" not in record


OLD_REQUEST = {
    "request_id": "r1",
    "tenant_id": "acme",
    "mode": "preview",
    "requested_at": "2026-03-20T12:00:00+00:00",
    "selector": {"kind": "learner_ids", "values": ["l1"]},
    "requested_by": None,
    "reason": None,
}


def answer_to_an_older_record(
    record: dict[str, Any], request: dict[str, Any], fingerprint: str
) -> tuple[list[dict[str, Any]], Any]:
    """The receipts a tenant stage sends for `request` (delivered again) when an older version
    stored `record` for its request id; and the batch, to look at what it kept."""
    from streams.stages import commands, keys
    from streams.stages.memory import MemoryStore
    from streams.stages.store import TENANT
    from streams.stages.tenant_deletions import TenantDeletions

    store = MemoryStore(partitions=1)
    store.assume(TENANT, [0])
    batch = store.batch()
    batch.put(keys.TENANT_STATE, 0, keys.deletion("acme", "r1"), record)
    command = commands.DeletionRequest({**request, "fingerprint": fingerprint})
    TenantDeletions(2).on_request(batch, 0, 7, command, datetime(2026, 3, 21, tzinfo=UTC))
    sent = [json.loads(value) for _, value in batch._outputs[(topics.DELETION_RECEIPTS, 0)]]
    return sent, batch


def test_a_conflict_an_older_version_kept_in_the_request_is_answered_from_there() -> None:
    """Versions before 2026-12-04 kept conflicting requests' receipts inside the request's
    record (`conflicts`, by fingerprint): a redelivery is answered with that receipt and not
    kept again."""
    from streams.domain.deletions import reused_id_error
    from streams.stages import keys
    from streams.stages.ingest import error_receipt

    now = datetime(2026, 3, 20, 12, tzinfo=UTC)
    other = {**OLD_REQUEST, "selector": {"kind": "learner_ids", "values": ["l2"]}}
    receipt = {**error_receipt(OLD_REQUEST, "", now), "attempts_affected": 1, "error": None}
    kept = error_receipt(other, reused_id_error("r1"), now)
    stored = {"fingerprint": "f", "request": OLD_REQUEST, "parts": 1, "received": {}}
    record = {**stored, "receipt": receipt, "conflicts": {"g": kept}}
    sent, batch = answer_to_an_older_record(record, other, "g")
    assert sent == [kept]
    assert batch.scan(keys.TENANT_STATE, 0, keys.deletion_conflicts("acme", "r1")) == []


def test_a_receipt_stored_whole_by_an_older_version_is_sent_as_it_was() -> None:
    """Versions before the bound stored a request's receipt whole (with its selector): a
    redelivery of such a request is answered with that receipt."""
    from streams.stages.ingest import error_receipt

    now = datetime(2026, 3, 20, 12, tzinfo=UTC)
    old_receipt = {**error_receipt(OLD_REQUEST, "", now), "attempts_affected": 1, "error": None}
    stored = {"fingerprint": "f", "request": OLD_REQUEST, "parts": 1, "received": {}}
    sent, _ = answer_to_an_older_record({**stored, "receipt": old_receipt}, OLD_REQUEST, "f")
    assert sent == [old_receipt]
