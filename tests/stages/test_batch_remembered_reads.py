"""A batch's remembered reads: a row is read from the store once until the batch's flush.

The learner stage reads its tenants' license entries and its learners' memberships with
`remember` (streams/stages/learners.py): a group's commands ask for many of the same rows, and
each command asked the store again (docs/benchmarks.md, "A group reads a row once"). What may
not change: the batch's own writes come first, the store is read again once the flush wrote it,
and no caller can change what the next one reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from streams.stages import keys
from streams.stages.batch import DurableBatch
from streams.stages.memory import MemoryLog, MemoryState
from streams.stages.ownership import Ownership

TABLE = keys.LEARNER_STATE
ACME = keys.license_entry("acme")
GLOBEX = keys.license_entry("globex")
ADA = keys.membership("acme", "ada")


class CountingState(MemoryState):
    """The store, with the keys each multi-get asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[list[bytes]] = []

    def get_many(self, table: str, partition: int, keys_: Sequence[bytes]) -> list[bytes | None]:
        self.asked.append(list(keys_))
        return super().get_many(table, partition, keys_)


def batch_over(rows: dict[bytes, bytes]) -> tuple[DurableBatch, CountingState]:
    state = CountingState()
    state.apply(TABLE, 0, dict(rows), 0, (1, 0))
    ownership = Ownership()
    ownership.claim("learner", 0, (1, 0))
    return DurableBatch(state, MemoryLog(1), ownership), state


def test_a_remembered_row_is_read_from_the_store_once() -> None:
    batch, state = batch_over({ACME: b'{"license":null}'})
    first = batch.get_many(TABLE, 0, [ACME, GLOBEX], remember=True)
    again = batch.get_many(TABLE, 0, [GLOBEX, ACME, ACME], remember=True)
    assert first == [{"license": None}, None]
    assert again == [None, {"license": None}, {"license": None}]
    assert state.asked == [[ACME, GLOBEX]]  # a missing row is remembered as missing too


def test_reads_without_remember_ask_the_store_each_time() -> None:
    batch, state = batch_over({ACME: b'{"license":null}'})
    batch.get_many(TABLE, 0, [ACME], remember=True)
    assert batch.get_many(TABLE, 0, [ACME]) == [{"license": None}]
    assert batch.get(TABLE, 0, ACME) == {"license": None}
    assert state.asked == [[ACME], [ACME], [ACME]]


def test_the_batch_s_own_writes_come_first_and_are_not_read() -> None:
    batch, state = batch_over({ACME: b'{"license":null}', ADA: b'{"2026-01-01":[1,2]}'})
    assert batch.get_many(TABLE, 0, [ACME, ADA], remember=True)[1] == {"2026-01-01": [1, 2]}
    batch.put(TABLE, 0, ADA, {"2026-01-01": [1, 3]})
    batch.delete(TABLE, 0, ACME)
    batch.put(TABLE, 0, GLOBEX, {"license": None})
    assert batch.get_many(TABLE, 0, [ACME, ADA, GLOBEX], remember=True) == [
        None,
        {"2026-01-01": [1, 3]},
        {"license": None},
    ]
    assert state.asked == [[ACME, ADA]]  # GLOBEX, written here, never asked of the store


def test_a_rolled_back_write_leaves_the_remembered_row() -> None:
    batch, _ = batch_over({ADA: b'{"2026-01-01":[1,2]}'})
    batch.get_many(TABLE, 0, [ADA], remember=True)
    mark = batch.savepoint()
    batch.put(TABLE, 0, ADA, {"2026-01-01": [1, 3]})
    batch.rollback(mark)
    assert batch.get_many(TABLE, 0, [ADA], remember=True) == [{"2026-01-01": [1, 2]}]


def test_rows_are_read_from_the_store_again_after_the_flush() -> None:
    batch, state = batch_over({ADA: b'{"2026-01-01":[1,2]}'})
    batch.get_many(TABLE, 0, [ADA], remember=True)
    batch.put(TABLE, 0, ADA, {"2026-01-01": [1, 3]})
    asyncio.run(batch.flush())
    # another writer's row, as a later batch of the stage would write it
    state.apply(TABLE, 0, {ADA: b'{"2026-01-01":[1,4]}'}, 1, (1, 0))
    assert batch.get_many(TABLE, 0, [ADA], remember=True) == [{"2026-01-01": [1, 4]}]
    assert state.asked == [[ADA], [ADA]]


def test_each_read_gets_a_value_of_its_own() -> None:
    batch, _ = batch_over({ADA: b'{"2026-01-01":[1,2]}'})
    [mine] = batch.get_many(TABLE, 0, [ADA], remember=True)
    mine["2026-01-01"][1] = 99
    mine["2026-02-01"] = [5, 5]
    assert batch.get_many(TABLE, 0, [ADA], remember=True) == [{"2026-01-01": [1, 2]}]


def test_rows_read_while_the_flush_ran_are_not_kept_after_it() -> None:
    """A read inside the flush (here a callback once durable; a repair's round reads before the
    write that follows it) is not kept past the flush (helper-122)."""
    batch, state = batch_over({ADA: b'{"2026-01-01":[1,2]}'})
    batch.put(TABLE, 0, ADA, {"2026-01-01": [1, 3]})
    seen: list[object] = []
    batch.on_durable(lambda: seen.append(batch.get_many(TABLE, 0, [GLOBEX], remember=True)))
    asyncio.run(batch.flush())
    assert seen == [[None]]
    state.apply(TABLE, 0, {GLOBEX: b'{"license":null}'}, 1, (1, 0))
    assert batch.get_many(TABLE, 0, [GLOBEX], remember=True) == [{"license": None}]
