"""A batch's scan in chunks sees every row: the local rows merged with the batch's own writes.

Callers read a prefix chunk by chunk and take a chunk shorter than its limit for the end (a
re-cut's memberships, a deletion's attempts). Found by a review (2026-12-02): a chunk whose
local rows the batch had deleted in part came back short while more rows followed, and the
caller stopped there.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from schemas import topics
from streams.stages import keys
from streams.stages.batch import DurableBatch
from streams.stages.memory import MemoryLog, MemoryState
from streams.stages.ownership import Ownership
from streams.stages.store import MAX_RECORD_BYTES, RecordTooLarge

TABLE = keys.LEARNER_STATE
PREFIX = b"m/acme/"


def batch_over(rows: dict[bytes, dict[str, int]]) -> DurableBatch:
    state = MemoryState()
    state.apply(TABLE, 0, {key: _json(value) for key, value in rows.items()}, 0, (1, 0))
    ownership = Ownership()
    ownership.claim("learner", 0, (1, 0))
    return DurableBatch(state, MemoryLog(1), ownership)


def _json(value: dict[str, int]) -> bytes:
    return ("{" + ",".join(f'"{k}":{v}' for k, v in value.items()) + "}").encode()


def chunked(batch: DurableBatch, limit: int) -> list[bytes]:
    """What a caller reads: chunks until one is shorter than the limit."""
    seen: list[bytes] = []
    after = None
    while True:
        chunk = batch.scan(TABLE, 0, PREFIX, after, limit)
        seen += [key for key, _ in chunk]
        if len(chunk) < limit:
            return seen
        after = chunk[-1][0]


def test_a_chunk_whose_rows_the_batch_deleted_is_filled_from_the_rows_after() -> None:
    stored = {PREFIX + f"l{n:02d}".encode(): {"n": n} for n in range(10)}
    batch = batch_over(stored)
    for n in range(3):
        batch.delete(TABLE, 0, PREFIX + f"l{n:02d}".encode())
    chunk = batch.scan(TABLE, 0, PREFIX, None, 5)
    assert [key for key, _ in chunk] == [PREFIX + f"l{n:02d}".encode() for n in range(3, 8)]
    assert [value for _, value in chunk] == [{"n": n} for n in range(3, 8)]
    assert chunked(batch, 5) == [PREFIX + f"l{n:02d}".encode() for n in range(3, 10)]


def test_chunks_see_every_row_whatever_the_batch_wrote_and_deleted() -> None:
    for seed in range(300):
        rng = random.Random(seed)
        stored = {PREFIX + f"l{n:03d}".encode(): {"n": n} for n in rng.sample(range(200), 60)}
        stored[b"m/other/l000"] = {"n": -1}  # another prefix: never in the scan
        batch = batch_over(stored)
        expected = {key for key in stored if key.startswith(PREFIX)}
        for _ in range(rng.randrange(80)):
            key = PREFIX + f"l{rng.randrange(200):03d}".encode()
            if rng.random() < 0.6:
                batch.delete(TABLE, 0, key)
                expected.discard(key)
            else:
                batch.put(TABLE, 0, key, {"n": 0})
                expected.add(key)
        limit = rng.choice([1, 2, 3, 5, 8, 50])
        assert chunked(batch, limit) == sorted(expected), (seed, limit)


def test_scans_between_writes_and_rollbacks_agree_with_a_plain_dict() -> None:
    """The batch keeps its pending keys in order for scans once one asked (a scan walked every
    pending key, which made the tenant stage quadratic in a batch's tenants); writes, deletes
    and rollbacks in any order keep that order true, also of many keys at once (`put_same`,
    `put_many`, `delete_many`: one undo entry for all of them)."""
    prefixes = [b"m/", b"m/a", b"m/ab", b"m/b/", b""]
    for seed in range(200):
        rng = random.Random(seed)
        names = [
            b"m/" + bytes(rng.choice(b"ab/") for _ in range(rng.randint(0, 4))) for _ in range(40)
        ]
        stored = {key: {"n": n} for n, key in enumerate(rng.sample(names, 10))}
        batch = batch_over(stored)
        model = dict(stored)
        marks: list[tuple[tuple[int, int], dict[bytes, dict[str, int]]]] = []
        for step in range(120):
            action = rng.random()
            key = rng.choice(names)
            # (many keys at once: a list with repeats, as a deletion's markers and tombstones)
            many = [rng.choice(names) for _ in range(rng.randint(0, 6))]
            if action < 0.3:
                batch.put(TABLE, 0, key, {"n": step})
                model[key] = {"n": step}
            elif action < 0.4:
                batch.delete(TABLE, 0, key)
                model.pop(key, None)
            elif action < 0.45:
                batch.put_same(TABLE, 0, many, {"n": step})
                model.update({name: {"n": step} for name in many})
            elif action < 0.5:
                batch.delete_many(TABLE, 0, many)
                for name in many:
                    model.pop(name, None)
            elif action < 0.55:
                rows = [(name, {"n": step * 10 + n}) for n, name in enumerate(many)]
                batch.put_many(TABLE, 0, iter(rows))
                model.update(rows)
            elif action < 0.62:
                marks.append((batch.savepoint(), dict(model)))
            elif action < 0.72 and marks:
                mark, model = marks.pop(rng.randrange(len(marks)))
                marks = [m for m in marks if m[0] < mark]
                batch.rollback(mark)
            else:
                prefix = rng.choice(prefixes)
                after = rng.choice([None, key])
                limit = rng.choice([None, 1, 3, 100])
                got = batch.scan(TABLE, 0, prefix, after, limit)
                want = sorted(
                    (k, v)
                    for k, v in model.items()
                    if k.startswith(prefix) and (after is None or k > after)
                )
                assert got == (want if limit is None else want[:limit]), (seed, step)


def _flushed(write: Callable[[DurableBatch], None]) -> tuple[list[Any], dict[bytes, bytes]]:
    """What a flush of `write` sends to the table's changelog (in order) and stores locally."""
    state = MemoryState()
    state.apply(TABLE, 0, {PREFIX + b"l1": b'{"n":1}', PREFIX + b"l2": b'{"n":2}'}, 0, (1, 0))
    ownership = Ownership()
    ownership.claim("learner", 0, (1, 0))
    log = MemoryLog(1)
    batch = DurableBatch(state, log, ownership)
    write(batch)
    asyncio.run(batch.flush())
    changelog = [(r.key, r.value) for r in log.records(topics.LEARNER_STATE_CHANGELOG, 0)]
    return changelog, dict(state.scan(TABLE, 0, b"", None, None))


def test_many_keys_at_once_write_what_one_key_at_a_time_writes_in_the_same_order() -> None:
    """`put_same`, `put_many` and `delete_many` send the changelog records a call per key
    sends, and store what it stores, in the order of the keys' first writes (a key named twice
    keeps its first place, and with `put_many` its last value)."""
    rng = random.Random(3)
    for _ in range(100):
        names = [PREFIX + f"l{rng.randrange(6)}".encode() for _ in range(rng.randrange(12))]
        lists = [rng.sample(names, rng.randrange(len(names) + 1)) for _ in range(4)]

        def at_once(batch: DurableBatch, lists: list[list[bytes]] = lists) -> None:
            batch.put(TABLE, 0, PREFIX + b"l9", {"n": 9})
            batch.put_same(TABLE, 0, lists[0], {"n": 0})
            batch.delete_many(TABLE, 0, lists[1])
            batch.put_same(TABLE, 0, lists[2], {"n": 2})
            batch.put_many(TABLE, 0, [(key, {"n": 30 + n}) for n, key in enumerate(lists[3])])

        def one_by_one(batch: DurableBatch, lists: list[list[bytes]] = lists) -> None:
            batch.put(TABLE, 0, PREFIX + b"l9", {"n": 9})
            for key in lists[0]:
                batch.put(TABLE, 0, key, {"n": 0})
            for key in lists[1]:
                batch.delete(TABLE, 0, key)
            for key in lists[2]:
                batch.put(TABLE, 0, key, {"n": 2})
            for n, key in enumerate(lists[3]):
                batch.put(TABLE, 0, key, {"n": 30 + n})

        assert _flushed(at_once) == _flushed(one_by_one), lists


def test_a_refused_put_of_many_keys_writes_none_of_them() -> None:
    batch = batch_over({})
    mark = batch.savepoint()
    too_long = PREFIX + b"x" * MAX_RECORD_BYTES
    with pytest.raises(RecordTooLarge):
        batch.put_same(TABLE, 0, iter([PREFIX + b"a", too_long, PREFIX + b"b"]), {"n": 1})
    assert not batch.wrote_since(mark)
    assert batch.scan(TABLE, 0, PREFIX) == []
    batch.put_same(TABLE, 0, iter([PREFIX + b"a", PREFIX + b"b"]), {"n": 1})  # (read twice)
    assert batch.scan(TABLE, 0, PREFIX) == [(PREFIX + b"a", {"n": 1}), (PREFIX + b"b", {"n": 1})]


def test_a_refused_put_of_many_rows_writes_none_of_them() -> None:
    """`put_many` checks every row's size before it writes any (the learner stage's attempts
    and memberships of a command: a refusal splits the command, which must leave nothing)."""
    batch = batch_over({PREFIX + b"a": {"n": 0}})
    mark = batch.savepoint()
    too_large = {"n": "x" * MAX_RECORD_BYTES}
    rows = [(PREFIX + b"a", {"n": 1}), (PREFIX + b"b", too_large), (PREFIX + b"c", {"n": 3})]
    with pytest.raises(RecordTooLarge) as refused_many:
        batch.put_many(TABLE, 0, iter(rows))
    assert not batch.wrote_since(mark)
    with pytest.raises(RecordTooLarge) as refused_one:  # the same refusal as a put's
        batch.put(TABLE, 0, PREFIX + b"b", too_large)
    assert str(refused_many.value) == str(refused_one.value)
    assert f"under {PREFIX + b'b'!r} exceeds {MAX_RECORD_BYTES:,}" in str(refused_one.value)
    assert not batch.wrote_since(mark)
    assert batch.scan(TABLE, 0, PREFIX) == [(PREFIX + b"a", {"n": 0})]
    batch.put_many(TABLE, 0, iter([rows[0], rows[2]]))
    assert batch.scan(TABLE, 0, PREFIX) == [(PREFIX + b"a", {"n": 1}), (PREFIX + b"c", {"n": 3})]
