"""A deposed owner's records found, and their repair failing with an error the worker survives.

A flush (or the periodic lineage check) that finds a deposed owner's records moves the lineage
past them, marks their keys on disk, and writes the keys again (for the tenant stage: answers
the count records they published). When that repair fails with a crash, the restart's takeover
repairs the marks. When it fails with an error the worker survives (a RocksDB read, a read of
the log: the tick or the group is applied again, SIMULATE_SURVIVED_FAILURES=1), no takeover
comes: the next check or write must find the records again, or the deposed owner's count record
stays the last of its window, wrong, until some rebalance (the contract: once input stops, the
last record of every window shows its exact counts).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.stages import keys
from streams.stages.store import TENANT, Fenced, epoch_header
from streams.stages.tenants import TenantStage
from tests.stages.test_late_outputs import COUNTS, DEPOSED, SUCCESSOR, last_of, taken_over

KEY = keys.count_record("acme", "2026-01-01")
LATE = b'{"tenant_id": "acme", "active_learners": 7}'


class ReadFailed(RuntimeError):
    """A read the worker survives (RocksDB's, or of the log)."""


def failing_once(stage: TenantStage) -> Any:
    """The stage's answer to a deposed owner's outputs, failing at its first call."""
    calls = {"n": 0}

    def repair(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ReadFailed("a read failed")
        return stage.repair_outputs(*args)

    return repair


def test_a_check_whose_repair_failed_finds_the_records_again() -> None:
    store = taken_over()
    store.log.append(COUNTS, 0, [(KEY, LATE)], epoch_header(DEPOSED))
    repair = failing_once(TenantStage(1))
    with pytest.raises(ReadFailed):
        asyncio.run(store.batch(repair).check_lineage(TENANT, [0]))
    # the tick is applied again (streams/stages/loop.py): its check runs again
    assert_answered_by_the_next_check(store, repair)


def test_a_flush_whose_repair_failed_leaves_the_records_to_the_next_check() -> None:
    store = taken_over()
    store.log.append(COUNTS, 0, [(KEY, LATE)], epoch_header(DEPOSED))
    repair = failing_once(TenantStage(1))
    batch = store.batch(repair)
    other = keys.count_record("acme", "2027-01-01")
    batch.emit(COUNTS, other, b'{"tenant_id": "acme", "active_learners": 0}', 0)
    with pytest.raises(ReadFailed):
        asyncio.run(batch.flush())
    # the group is applied again, and later the periodic check runs
    assert_answered_by_the_next_check(store, repair)


def assert_answered_by_the_next_check(store: Any, repair: Any) -> None:
    """The next lineage check finds the deposed owner's record again and answers it with the
    successor's count."""
    asyncio.run(store.batch(repair).check_lineage(TENANT, [0]))
    epoch, value = last_of(store, COUNTS, KEY)
    assert epoch == SUCCESSOR
    assert b'"active_learners":2' in (value or b"")


def test_a_repair_that_passes_at_once_is_not_read_again() -> None:
    """(what held) a check whose repair passed leaves nothing for the next check to answer."""
    store = taken_over()
    store.log.append(COUNTS, 0, [(KEY, LATE)], epoch_header(DEPOSED))
    asyncio.run(store.batch(TenantStage(1).repair_outputs).check_lineage(TENANT, [0]))
    repaired = store.ownership.zombies_repaired
    asyncio.run(store.batch(TenantStage(1).repair_outputs).check_lineage(TENANT, [0]))
    assert store.ownership.zombies_repaired == repaired == 1
    assert last_of(store, COUNTS, KEY)[0] == SUCCESSOR


def test_the_next_flush_reads_its_own_records_again_and_answers_only_the_deposed_one() -> None:
    """(what held, helper-103's review) the lineage moved back to before the failed flush's
    own records, which are in the log and written locally: the next flush, whose sends land
    after them, reads them again and passes them over (this owner's epoch), answering only
    the deposed owner's record, once more."""
    store = taken_over()
    store.log.append(COUNTS, 0, [(KEY, LATE)], epoch_header(DEPOSED))
    repair = failing_once(TenantStage(1))
    other = keys.count_record("acme", "2027-01-01")
    zero = b'{"tenant_id": "acme", "active_learners": 0}'
    batch = store.batch(repair)
    batch.emit(COUNTS, other, zero, 0)
    with pytest.raises(ReadFailed):
        asyncio.run(batch.flush())
    own = [r for r in store.log.records(COUNTS, 0) if r.key == other]
    assert [r.epoch for r in own] == [SUCCESSOR]
    batch = store.batch(repair)
    batch.emit(COUNTS, other, zero, 0)
    asyncio.run(batch.flush())
    assert store.ownership.zombies_repaired == 2, "the deposed record twice, no own record"
    assert last_of(store, COUNTS, KEY)[0] == SUCCESSOR
    assert [r.epoch for r in store.log.records(COUNTS, 0) if r.key == other] == [SUCCESSOR] * 2


def test_a_newer_owners_record_after_the_moved_back_lineage_fences_this_owner() -> None:
    """(what held, helper-103's review) moved back, the lineage never takes a successor's
    records for a deposed owner's to answer: the next check finds a newer epoch and this
    owner learns it was deposed, writing nothing after the successor's record."""
    store = taken_over()
    store.log.append(COUNTS, 0, [(KEY, LATE)], epoch_header(DEPOSED))
    repair = failing_once(TenantStage(1))
    with pytest.raises(ReadFailed):
        asyncio.run(store.batch(repair).check_lineage(TENANT, [0]))
    newer = b'{"tenant_id": "acme", "active_learners": 3}'
    store.log.append(COUNTS, 0, [(KEY, newer)], epoch_header((3, 4)))
    with pytest.raises(Fenced):
        asyncio.run(store.batch(repair).check_lineage(TENANT, [0]))
    assert last_of(store, COUNTS, KEY) == ((3, 4), newer)


def test_a_check_whose_own_flush_failed_finds_the_records_again() -> None:
    """(what held, helper-103's review) the check's flush, moved inside its `try` by
    helper-101, fails before anything of the repair is in Kafka (a send that failed for good):
    the tick is applied again, and its check answers the deposed owner's record."""
    store = taken_over()
    store.log.append(COUNTS, 0, [(KEY, LATE)], epoch_header(DEPOSED))
    send = store.log.send
    sends = {"n": 0}

    async def failing_once(*args: Any) -> Any:
        sends["n"] += 1
        if sends["n"] == 1:
            raise ReadFailed("the send failed")
        return await send(*args)

    store.log.send = failing_once  # type: ignore[method-assign]
    with pytest.raises(ReadFailed):
        asyncio.run(store.batch(TenantStage(1).repair_outputs).check_lineage(TENANT, [0]))
    assert last_of(store, COUNTS, KEY)[0] == DEPOSED
    asyncio.run(store.batch(TenantStage(1).repair_outputs).check_lineage(TENANT, [0]))
    epoch, value = last_of(store, COUNTS, KEY)
    assert epoch == SUCCESSOR
    assert b'"active_learners":2' in (value or b"")
