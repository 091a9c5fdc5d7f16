"""How large a deletion request may be, and what every request gets whatever its size.

The tenant stage stores a request with its receipt, and both echo its selector: the selector is
bounded (SELECTOR_MAX_BYTES), so that no record written for a request outgrows Kafka's limit.
Found on 2026-11-30: a request of 600 KB (2,400 long learner ids, through Kafka or the CLI) got
no receipt, its deletion was applied unreported and its tenant's thresholds stayed held for 15
minutes; and conflicting requests under one request id lost their error receipts once the
stored request kept a few of them whole.
"""

from __future__ import annotations

from typing import Any

from schemas import topics
from streams.domain.selectors import SELECTOR_MAX_BYTES, Selector
from streams.stages.store import MAX_RECORD_BYTES
from tests.stages.pipeline import Pipeline, deletion, launch, license_

JAN = "2026-01-01"


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
    request |= {"reason": "r" * 1000, "requested_by": "b" * 256}
    assert Selector.of("learner_ids", ids).too_large() is None
    p.produce(topics.ATTEMPT_DELETIONS, request)
    p.flow()
    p.settle()
    (receipt,) = p.receipts("r1")
    assert receipt["error"] is None and receipt["attempts_affected"] == 2
    assert len(receipt["selector"]["values"]) == len(ids)
    assert p.active("acme", JAN) == 2
    size, topic = largest_record(p)
    assert size < MAX_RECORD_BYTES * 0.6, (size, topic)
    assert p.world.gave_up == [] and p.check() == []


def test_conflicting_requests_under_one_id_each_get_their_receipt_again_and_again() -> None:
    """Five other requests under a used request id, each near the limit: every one gets its
    error receipt, and a redelivery of one gets the same receipt (its first `completed_at`)."""
    p = two_learners_over_the_threshold()
    first = deletion("acme", "r1", "preview", p.now, learner_ids=["l0"])
    p.produce(topics.ATTEMPT_DELETIONS, first)
    p.flow()
    others: list[dict[str, Any]] = []
    for n in range(5):
        ids = ids_of_selector_size(f"c{n}-", SELECTOR_MAX_BYTES)
        others.append(deletion("acme", "r1", "preview", p.now, learner_ids=ids))
        p.produce(topics.ATTEMPT_DELETIONS, {**others[-1], "reason": f"attempt {n}"})
        p.flow()
        p.advance(60)
    errors = [r for r in p.receipts("r1") if r["error"]]
    assert len(errors) == 5 and all("already used" in r["error"] for r in errors)
    assert [r["reason"] for r in errors] == [f"attempt {n}" for n in range(5)]
    p.produce(topics.ATTEMPT_DELETIONS, {**others[2], "reason": "attempt 2"})  # redelivered
    p.flow()
    again = p.receipts("r1")[-1]
    assert again == errors[2], "a redelivery is answered with the same receipt"
    assert p.world.gave_up == [] and p.dead_letters() == []
    size, topic = largest_record(p)
    assert size < MAX_RECORD_BYTES * 0.6, (size, topic)
    assert p.check() == []


def test_a_conflict_kept_whole_by_an_older_version_is_answered_as_it_was() -> None:
    """Versions before the bound kept each conflicting request's receipt whole: such a stored
    request still answers a redelivery with that receipt."""
    import json
    from datetime import UTC, datetime

    from streams.stages import commands, keys
    from streams.stages.ingest import error_receipt
    from streams.stages.memory import MemoryStore
    from streams.stages.store import TENANT
    from streams.stages.tenant_deletions import TenantDeletions

    store = MemoryStore(partitions=1)
    store.assume(TENANT, [0])
    batch = store.batch()
    now = datetime(2026, 3, 20, 12, tzinfo=UTC)
    request = {
        "request_id": "r1",
        "tenant_id": "acme",
        "mode": "preview",
        "requested_at": now.isoformat(),
        "selector": {"kind": "learner_ids", "values": ["l1"]},
        "requested_by": None,
        "reason": None,
    }
    old_receipt = error_receipt(request, "request_id 'r1' was already used", now)
    key = keys.deletion("acme", "r1")
    stored = {"fingerprint": "first", "parts": 0, "received": {}, "receipt": {"request_id": "r1"}}
    batch.put(keys.TENANT_STATE, 0, key, {**stored, "conflicts": {"other": old_receipt}})
    later = datetime(2026, 3, 21, tzinfo=UTC)
    command = commands.DeletionRequest({**request, "fingerprint": "other"})
    TenantDeletions(2).on_request(batch, 0, 7, command, later)
    sent = [json.loads(value) for _, value in batch._outputs[(topics.DELETION_RECEIPTS, 0)]]
    assert sent == [old_receipt]
