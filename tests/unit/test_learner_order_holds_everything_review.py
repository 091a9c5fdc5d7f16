"""Counted learners are not streamed for ordinary ids such as `user-00042` (review 2026-12-03).

CONTRACT.md, `GET .../windows/{start}/learners`: "streamed, from every learner partition";
README: "Rows are ordered by learner id and streamed, so a window of a million learners
downloads in flat memory". `LearnerOrder` holds back every id whose key order may differ from
its id order until "no id that must come before it can still arrive": for `user-00001` that is
the id `user` (key `user/` sorts after every `user-…/`), so every row of the partition is held
until its scan ends. The first byte of the answer waits for the whole scan of every partition,
and each partition's rows are all in memory at once (a million-learner tenant whose LMS ids are
`user-N`, `emp.N` or `jane doe N`). Fixed: the order asks whether the prefix id exists in the
partition (helper-60's review)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest

from schemas import topics
from streams.domain import reports as pure
from streams.domain.reports import Span
from streams.stages import reports
from tests.stages.pipeline import Pipeline, launch, license_


def test_learner_order_releases_ordinary_prefixed_ids_at_once() -> None:
    ids = [f"user-{n:05d}" for n in range(5_000)]
    in_key_order = sorted(ids, key=lambda learner: (learner + "/").encode())
    present = set(ids)
    order = pure.LearnerOrder(exists=present.__contains__)
    held_most = 0
    out: list[str] = []
    for pushed, learner in enumerate(in_key_order, 1):
        out += [released for released, _ in order.push(learner, None)]
        held_most = max(held_most, pushed - len(out))
    out += [released for released, _ in order.finish()]
    # no id `user` exists: once the order asks, nothing waits for it
    assert held_most <= pure.HELD_BEFORE_ASKING + 1, f"{held_most} rows held back at once"
    assert out == sorted(ids)


@pytest.mark.parametrize("held_before_asking", [0, 1, 3, pure.HELD_BEFORE_ASKING])
def test_random_ids_with_and_without_their_prefixes_come_out_in_id_order(
    monkeypatch: pytest.MonkeyPatch, held_before_asking: int
) -> None:
    monkeypatch.setattr(pure, "HELD_BEFORE_ASKING", held_before_asking)
    rng = random.Random(20261203 + held_before_asking)
    alphabet = "ab-. /_0"
    for _ in range(2_000):
        ids = {
            "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))).strip("/") or "a"
            for _ in range(rng.randint(1, 25))
        }
        ids = {learner for learner in ids if "/" not in learner}
        in_key_order = sorted(ids, key=lambda learner: (learner + "/").encode())
        order = pure.LearnerOrder(exists=ids.__contains__)
        out = [learner for x in in_key_order for learner, _ in order.push(x, None)]
        out += [learner for learner, _ in order.finish()]
        assert out == sorted(ids), (sorted(ids), out)


def test_a_prefix_that_exists_holds_its_longer_ids_until_it_arrives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pure, "HELD_BEFORE_ASKING", 10)  # asked, and `user` exists
    ids = ["user", *(f"user-{n}" for n in range(100))]
    in_key_order = sorted(ids, key=lambda learner: (learner + "/").encode())
    order = pure.LearnerOrder(exists=set(ids).__contains__)
    released = [learner for x in in_key_order[:-1] for learner, _ in order.push(x, None)]
    assert released == []  # `user` comes last in key order and first in id order
    out = [learner for learner, _ in order.push(in_key_order[-1], None)] + [
        learner for learner, _ in order.finish()
    ]
    assert out == sorted(ids)


def test_a_partition_yields_its_first_rows_before_its_scan_ends() -> None:
    now = datetime(2026, 3, 20, 12, tzinfo=UTC)
    p = Pipeline(partitions=1, start=now)
    p.produce(topics.LICENSES, license_("acme", cycle_start="2026-01-01", window_months=12))
    for n in range(3 * reports.CHUNK):
        p.produce(topics.LAUNCHES, launch("acme", f"user-{n:05d}", "a", "2026-03-02T10:00:00Z"))
    p.settle()
    window = Span(
        datetime(2026, 1, 1, tzinfo=UTC).timestamp(), datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    )

    async def first_chunk() -> list[list[object]]:
        chunks = reports.window_rows(p.worker().state, 0, "acme", window)
        try:
            return await anext(chunks)
        finally:
            await chunks.aclose()

    chunk = asyncio.run(first_chunk())
    # the rows of the first chunks read, before the scan of the partition ended
    assert len(chunk) <= 2 * reports.CHUNK, f"the first chunk: {len(chunk)} rows"
    assert [row[0] for row in chunk] == [f"user-{n:05d}" for n in range(len(chunk))]
