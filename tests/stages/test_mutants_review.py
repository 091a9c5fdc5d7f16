"""Mutation review (helper-95, 2026-12-05): bugs put into the stages by hand that neither the
simulator (610 seeds, every mode) nor the other tests under tests/stages and tests/unit caught.
Each test here fails with its bug and passes without it.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from schemas import topics
from streams.stages import keys
from streams.stages.batch import take_over
from streams.stages.memory import MemoryStore, never_deposed
from streams.stages.store import TENANT, Fenced, epoch_header

CHANGELOG = topics.TENANT_STATE_CHANGELOG


def taken_over() -> MemoryStore:
    """A store whose tenant-state partition 0 this owner took over (generation 3)."""
    store = MemoryStore(partitions=1)
    rows = [(keys.EPOCH, orjson.dumps([1, 1])), (b"parts/acme", orjson.dumps({"0": 2}))]
    store.log.append(CHANGELOG, 0, rows, epoch_header((1, 1)))
    store.state.apply(keys.TENANT_STATE, 0, dict(rows), 1, (1, 1))
    asyncio.run(take_over(store.batch(), TENANT, [0], generation=3, still_member=never_deposed))
    return store


def test_a_flush_after_a_newer_owners_record_is_fenced_and_writes_nothing_locally() -> None:
    """Mutant: `_foreign` (streams/stages/batch.py) never raises `Fenced` for a record of a
    newer epoch. The simulator's deposed owners are also stopped by refused commits and by
    takeovers' own checks, and whatever they write after is answered by the successor's
    lineage repair, so its final counts stay exact and it never noticed; but a deposed owner
    that does not stop at its first sight of a successor's record writes its local tables on
    (and runs its callbacks) from a view that is no longer the partition's."""
    store = taken_over()
    mine = store.ownership.epoch_of(TENANT, 0)
    newer = (mine[0], mine[1] + 3)
    store.log.append(CHANGELOG, 0, [(keys.EPOCH, orjson.dumps(list(newer)))], epoch_header(newer))
    batch = store.batch()
    ran: list[int] = []
    batch.put(keys.TENANT_STATE, 0, b"parts/acme", {"0": 3})
    batch.on_durable(lambda: ran.append(1))
    with pytest.raises(Fenced):
        asyncio.run(batch.flush())
    assert store.batch().get(keys.TENANT_STATE, 0, b"parts/acme") == {"0": 2}
    assert ran == [], "no callback of a fenced flush runs"
