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

import orjson

from schemas import topics
from streams.stages import keys
from streams.stages.batch import take_over
from streams.stages.memory import MemoryStore, never_deposed
from streams.stages.store import TENANT, epoch_header
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
