"""A deposed tenant owner's output records that land between a rebalance and the next owner's
takeover (simulator seeds 16980225, 16980244, 16980343 of SIMULATE_LATE_COUNTS=1).

The deposed owner's changelog records landed long before (its successor restored them as its
lineage), its count records were still in flight when its own noticing caused a rebalance, and
they landed before the next owner's takeover read the end offsets where its lineage of the
fenced outputs started (`Ownership.start_at_end`). The owner they landed under was deposed
before its next check; the next owner started past them: nobody answered them, and a window an
older license cut stayed on the compacted count topic for good. The takeover starts the
outputs' lineage where the previous owner's stood at its last flush now (`keys.OUTPUTS_FROM`;
docs/reliability.md, "What the session of 2026-12-06 from 01:20 found").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from schemas import topics
from streams.stages import keys
from streams.stages.batch import DurableBatch, take_over
from streams.stages.memory import MemoryStore, never_deposed
from streams.stages.ownership import Ownership
from streams.stages.store import FENCED_OUTPUTS, TENANT, epoch_header
from streams.stages.tenants import TenantStage

CHANGELOG = topics.TENANT_STATE_CHANGELOG
COUNTS = topics.ACTIVE_LEARNER_COUNTS
PUBLISHED = {"cut": "1970-01-01/12/UTC", "license": None, "windows": {"2026-01-01": [2, 2]}}


def test_a_deposed_owners_count_record_landing_before_a_takeover_is_answered() -> None:
    store = MemoryStore(partitions=1)
    # the previous owner (2, 2): its takeover and its view of acme, one window
    rows = [
        (keys.EPOCH, orjson.dumps([2, 2])),
        (b"pub/acme", orjson.dumps(PUBLISHED)),
        (b"parts/acme", orjson.dumps({"0": 2})),
        # where its outputs' lineage stood at its flush (`DurableBatch._note_outputs_from`)
        (keys.OUTPUTS_FROM, orjson.dumps({"epoch": [2, 2], "from": {COUNTS: 0}})),
    ]
    store.log.append(CHANGELOG, 0, rows, epoch_header((2, 2)))
    store.state.apply(keys.TENANT_STATE, 0, dict(rows), 2, (2, 2))
    current = keys.count_record("acme", "2026-01-01")
    store.log.append(COUNTS, 0, [(current, b'{"active_learners": 2}')], epoch_header((2, 2)))
    # the deposed owner (1, 1) counted under an older license: its record of a window the
    # current cut lacks lands after the rebalance, before the next takeover
    stale = keys.count_record("acme", "2025-01-01")
    store.log.append(COUNTS, 0, [(stale, b'{"active_learners": 1}')], epoch_header((1, 1)))
    stage = TenantStage(1)
    asyncio.run(
        take_over(
            store.batch(stage.repair_outputs), TENANT, [0], generation=3, still_member=never_deposed
        )
    )
    asyncio.run(store.batch(stage.repair_outputs).check_lineage(TENANT, [0]))
    records = store.log.records(COUNTS, 0)
    assert [record.value for record in records if record.key == stale][-1] is None


# -- what a review of the first fix found (docs/reliability.md, the session of 2026-12-06 from
# 04:35): each test failed on that fix --------------------------------------------------------
NOW = datetime(2026, 6, 1, tzinfo=UTC)
EVENTS = topics.THRESHOLD_EVENTS
WINDOWS = {"2024-01-01": [1, 1], "2025-01-01": [2, 2], "2026-01-01": [3, 3]}


def previous_owner(
    epoch: tuple[int, int], rows: list[tuple[bytes, bytes]], counts_from: int = 0
) -> MemoryStore:
    """A store whose tenant-state partition 0 holds a previous owner's takeover, `rows` and
    where its outputs' lineage stood (the start of every fenced output, the count topic's at
    `counts_from`)."""
    store = MemoryStore(partitions=1)
    stood = {topic: counts_from if topic == COUNTS else 0 for topic in FENCED_OUTPUTS}
    outputs_from = {"epoch": list(epoch), "from": stood}
    rows = [
        (keys.EPOCH, orjson.dumps(list(epoch))),
        *rows,
        (keys.OUTPUTS_FROM, orjson.dumps(outputs_from)),
    ]
    store.log.append(CHANGELOG, 0, rows, epoch_header(epoch))
    store.state.apply(keys.TENANT_STATE, 0, dict(rows), len(rows) - 1, epoch)
    return store


def new_process(store: MemoryStore, stage: TenantStage) -> DurableBatch:
    """A batch of another process over the same state (its own ownership), as the worker
    makes it for the tenant stage: state first, outputs after."""
    return DurableBatch(store.state, store.log, Ownership(), stage.repair_outputs, False)


async def counts_fail(store: MemoryStore, step: Awaitable[None]) -> None:
    """Run `step` while every send to the count topic fails (the broker went away)."""
    real_send = store.log.send

    async def outputs_fail(groups: Any, headers: Any = None) -> Any:
        if any(topic == COUNTS for topic, _ in groups):
            raise ConnectionError("the broker went away (simulated)")
        return await real_send(groups, headers)

    store.log.send = outputs_fail  # type: ignore[method-assign]
    try:
        await step
    finally:
        store.log.send = real_send  # type: ignore[method-assign]


async def worker_takeover(batch: DurableBatch, stage: TenantStage, generation: int) -> None:
    """streams/worker/agents/tenants.py `take_over_tenant_partitions`, for partition 0."""
    await take_over(batch, TENANT, [0], generation, never_deposed)
    await batch.repair_marked(TENANT, [0])
    await stage.take_over_outputs(batch, 0, NOW)


def test_takeovers_of_a_quiet_partition_send_the_same_each_time() -> None:
    """Finding 1: nobody writes the tenant's state between takeovers; the row moves on with
    the takeovers' own outputs (the first fix's row stayed put: 3, 6, 12, ... count records a
    takeover; the second's stood before the takeover's own send: 3, 6, 3, 6, ...)."""
    published = {**PUBLISHED, "windows": WINDOWS}
    store = previous_owner((2, 2), [(b"pub/acme", orjson.dumps(published))])
    stage = TenantStage(1, clock=lambda: NOW)
    sent, read = [], []
    for generation in range(3, 10):
        before = len(store.log.records(COUNTS, 0))
        batch = new_process(store, stage)
        asyncio.run(worker_takeover(batch, stage, generation))
        sent.append(len(store.log.records(COUNTS, 0)) - before)
        read.append(batch._own.zombies_repaired)
    # its truth, and nothing of its predecessor's read back as a deposed owner's: the row
    # moved past the predecessor's own send (helper-110; before, every other takeover read
    # that send back and sent it again: 3, 6, 3, 6, ...)
    assert sent == [len(WINDOWS)] * len(sent), sent
    assert read == [0] * len(read), read
    assert set(store.log.latest(COUNTS)) == {keys.count_record("acme", w) for w in WINDOWS}


def test_a_late_event_is_answered_with_the_later_pending_crossing() -> None:
    """Finding 2: a crash landed the predecessor's pending `down` (crossing 2) without its
    window record, which keeps the `up` (crossing 1); both events of the predecessor are on the
    topic. The takeover's answer to them is the `down`, not the kept `up`."""
    window = {"start": "2026-01-01", "end": "2027-01-01", "months": 12}

    def event(direction: str, crossing: int, active: int) -> dict[str, object]:
        return {
            "event_id": f"e-{direction}-{crossing}",
            "tenant_id": "acme",
            "window": window,
            "threshold_pct": 80,
            "threshold_learners": 8,
            "direction": direction,
            "active_learners": active,
            "learner_limit": 10,
            "notify": ["admin@acme.example"],
            "occurred_at": NOW.isoformat(),
        }

    up, down = event("up", 1, 8), event("down", 2, 7)
    kept_up = {k: v for k, v in up.items() if k not in ("tenant_id", "notify")} | {"notify": 0}
    record = {
        "notify": [["admin@acme.example"]],
        "pcts": {"80": {"above": True, "crossings": 1, "event": kept_up}},
    }
    store = previous_owner(
        (2, 2),
        [
            (keys.pending_threshold_event("acme", "2026-01-01", 80, 2), orjson.dumps(down)),
            (keys.window_thresholds("acme", "2026-01-01"), orjson.dumps(record)),
        ],
    )
    store.log.append(
        EVENTS,
        0,
        [(b"acme", orjson.dumps(up)), (b"acme", orjson.dumps(down))],
        epoch_header((2, 2)),
    )
    stage = TenantStage(1, clock=lambda: NOW)
    asyncio.run(worker_takeover(new_process(store, stage), stage, 3))
    last = orjson.loads(store.log.records(EVENTS, 0)[-1].value or b"")
    assert (last["direction"], last["event_id"]) == ("down", "e-down-2")


def test_the_row_stays_before_a_record_whose_answer_failed_to_go_out() -> None:
    """Finding 3: a check finds a deposed owner's count record, the row lands with the state,
    the answer's send fails and the worker stops: the next owner starts before the record and
    answers it."""
    store = previous_owner((2, 2), [(b"pub/acme", orjson.dumps(PUBLISHED))])
    stage = TenantStage(1, clock=lambda: NOW)
    owner = new_process(store, stage)
    asyncio.run(worker_takeover(owner, stage, 3))
    stale = keys.count_record("acme", "2025-01-01")
    store.log.append(COUNTS, 0, [(stale, b'{"active_learners": 1}')], epoch_header((1, 1)))
    with pytest.raises(ConnectionError):
        asyncio.run(counts_fail(store, owner.check_lineage(TENANT, [0])))
    # the worker stopped; the next owner takes over from what is on disk
    asyncio.run(worker_takeover(new_process(store, stage), stage, 4))
    assert [r.value for r in store.log.records(COUNTS, 0) if r.key == stale][-1] is None


def test_a_row_an_older_version_left_behind_is_not_used() -> None:
    """Finding 4: an older version's owner (3, 5) took over after the row's writer (2, 2) and
    wrote no row; the count records since are read from the end, not again from the row."""
    published = {**PUBLISHED, "windows": WINDOWS}
    store = previous_owner((2, 2), [(b"pub/acme", orjson.dumps(published))])
    older = [(keys.EPOCH, orjson.dumps([3, 5]))]
    store.log.append(CHANGELOG, 0, older, epoch_header((3, 5)))
    store.state.apply(
        keys.TENANT_STATE, 0, dict(older), len(store.log.records(CHANGELOG, 0)) - 1, (3, 5)
    )
    for _ in range(50):  # hours of that owner's records
        pairs = [(keys.count_record("acme", w), b'{"active_learners": 3}') for w in WINDOWS]
        store.log.append(COUNTS, 0, pairs, epoch_header((3, 5)))
    stage = TenantStage(1, clock=lambda: NOW)
    batch = new_process(store, stage)
    asyncio.run(take_over(batch, TENANT, [0], 6, never_deposed))
    assert batch._own.expected[(COUNTS, 0)] == len(store.log.records(COUNTS, 0))


# -- what a review of the fix found (helper-109) ------------------------------------------------
def test_a_survived_failure_of_an_outputs_send_reads_the_changelog_again() -> None:
    """A flush of outputs alone (an answer round) sends the row, whose changelog lineage finds
    a deposed owner's record of what it published; then the outputs' send fails and the worker
    survives: the lineage moves back, so a check finds the record again and answers the window
    it names (a plain raise left it past the record until a takeover). Its count record
    landed before the row's offset: only the record of what it published names it."""
    rows = [(b"pub/acme", orjson.dumps(PUBLISHED))]
    store = previous_owner((2, 2), rows, counts_from=1)
    stale = keys.count_record("acme", "2025-01-01")
    store.log.append(COUNTS, 0, [(stale, b'{"active_learners": 1}')], epoch_header((2, 2)))
    stage = TenantStage(1, clock=lambda: NOW)
    owner = new_process(store, stage)
    asyncio.run(take_over(owner, TENANT, [0], 3, never_deposed))
    theirs = {**PUBLISHED, "windows": {"2025-01-01": [1, 1]}}
    store.log.append(CHANGELOG, 0, [(b"pub/acme", orjson.dumps(theirs))], epoch_header((2, 2)))
    owner.emit(COUNTS, keys.count_record("acme", "2026-01-01"), b'{"active_learners": 2}', 0)
    with pytest.raises(ConnectionError):
        asyncio.run(counts_fail(store, owner.flush()))
    asyncio.run(owner.check_lineage(TENANT, [0]))
    assert [r.value for r in store.log.records(COUNTS, 0) if r.key == stale][-1] is None


def test_a_takeover_whose_send_landed_only_its_row_leaves_it_usable() -> None:
    """The row goes first in a takeover's changelog send: a send that lands only it (the
    owner failed and wrote nothing else) leaves a row under a later epoch than the stored
    one, which the next takeover uses; a record landed before it is answered."""
    store = previous_owner((2, 2), [(b"pub/acme", orjson.dumps(PUBLISHED))])
    stale = keys.count_record("acme", "2025-01-01")
    store.log.append(COUNTS, 0, [(stale, b'{"active_learners": 1}')], epoch_header((2, 2)))
    stage = TenantStage(1, clock=lambda: NOW)
    failed = new_process(store, stage)
    real_send = store.log.send
    landed: list[list[bytes | None]] = []

    async def first_record_only(groups: Any, headers: Any = None) -> Any:
        groups = {tp: list(pairs)[:1] for tp, pairs in groups.items()}
        landed.append([key for pairs in groups.values() for key, _ in pairs])
        await real_send(groups, headers)
        raise ConnectionError("the rest of the send was lost (simulated)")

    store.log.send = first_record_only  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        asyncio.run(take_over(failed, TENANT, [0], 3, never_deposed))
    store.log.send = real_send  # type: ignore[method-assign]
    assert landed == [[keys.OUTPUTS_FROM]]
    # the next owner restores what landed (the row, not the epoch)
    row = store.log.records(CHANGELOG, 0)[-1]
    store.state.apply(keys.TENANT_STATE, 0, {row.key: row.value}, row.offset, row.epoch)
    asyncio.run(worker_takeover(new_process(store, stage), stage, 4))
    assert [r.value for r in store.log.records(COUNTS, 0) if r.key == stale][-1] is None


# -- what a second review found (helper-110) ------------------------------------------------------
def test_a_failed_write_of_a_checks_marks_moves_its_lineage_back() -> None:
    """A check finds a deposed owner's record of what it published and its count record;
    writing the marks fails (a local error the worker survives): the lineage moves back, so
    the owner's next checks answer the count record and its row moves on past it."""
    store = previous_owner((2, 2), [(b"pub/acme", orjson.dumps(PUBLISHED))])
    stage = TenantStage(1, clock=lambda: NOW)
    owner = new_process(store, stage)
    asyncio.run(worker_takeover(owner, stage, 3))
    stale = keys.count_record("acme", "2025-01-01")
    theirs = {**PUBLISHED, "windows": {"2025-01-01": [1, 1]}}
    store.log.append(CHANGELOG, 0, [(b"pub/acme", orjson.dumps(theirs))], epoch_header((2, 2)))
    store.log.append(COUNTS, 0, [(stale, b'{"active_learners": 1}')], epoch_header((2, 2)))
    stale_at = len(store.log.records(COUNTS, 0)) - 1
    real_apply = store.state.apply

    def marks_fail(table: str, partition: int, rows: Any, offset: int, epoch: Any) -> Any:
        if offset == -1:  # (marks alone are applied without an offset)
            raise OSError("disk full (simulated)")
        return real_apply(table, partition, rows, offset, epoch)

    store.state.apply = marks_fail  # type: ignore[method-assign]
    with pytest.raises(OSError):
        asyncio.run(owner.check_lineage(TENANT, [0]))
    store.state.apply = real_apply  # type: ignore[method-assign]
    for _ in range(3):  # the owner goes on: its checks and flushes
        asyncio.run(owner.check_lineage(TENANT, [0]))
        owner.emit(COUNTS, keys.count_record("acme", "2026-01-01"), b'{"active_learners": 2}', 0)
        asyncio.run(owner.flush())
    rows = [r.value for r in store.log.records(CHANGELOG, 0) if r.key == keys.OUTPUTS_FROM]
    assert [r.value for r in store.log.records(COUNTS, 0) if r.key == stale][-1] is None
    assert orjson.loads(rows[-1] or b"")["from"][COUNTS] > stale_at
