"""Review of e421f1c..HEAD (reports): a learner that appears while a partition's report streams
comes out of learner-id order (helper-62; fixed: such a learner is left out of that report).

`LearnerOrder(exists)` (streams/domain/reports.py) releases `john.doe` at once when `exists('john')`
says no learner `john` is in the partition. The report reads the partition chunk by chunk, with
the stages running in between (streams/stages/reports.py: `await asyncio.sleep(0)` per chunk, the
HTTP stream's writes): a first launch of `john` applied after that look-up lands at key
`acme/john/...`, which sorts after every `acme/john.../` key, so the scan still reaches it and
pushes `john` after `john.doe` was yielded. Before the change the order held `john.doe` until the
key `john/` had passed, whatever arrived meanwhile; the merge of the partitions
(streams/domain/reports.py: `merge_ordered`) trusts each partition's order, so the answer is
unordered.

Run from the repository root:
    .venv/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_report_order_race_review.py
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right

import orjson

from streams.domain.reports import Span
from streams.stages import keys, reports

TENANT = "acme"
LAUNCHED = "2026-03-02T10:00:00+00:00"
CURRENT = Span(1767225600.0, 1798761600.0)  # 2026


class _Reads:
    """The two reads a report makes (streams/stages/store.py: Reads), over sorted dicts."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[bytes, bytes]] = {}

    def put(self, table: str, key: bytes, value: dict) -> None:
        self.tables.setdefault(table, {})[key] = orjson.dumps(value)

    def get_many(self, table: str, partition: int, keys_: list[bytes]) -> list[bytes | None]:
        rows = self.tables.get(table, {})
        return [rows.get(key) for key in keys_]

    def scan(self, table, partition, prefix, after, limit):  # type: ignore[no-untyped-def]
        ordered = sorted(self.tables.get(table, {}).items())
        start = 0 if after is None else bisect_right([k for k, _ in ordered], after)
        found = [(k, v) for k, v in ordered[start:] if k.startswith(prefix)]
        return found if limit is None else found[:limit]


def _attempt(reads: _Reads, learner: str) -> None:
    reads.put(
        keys.ATTEMPTS,
        keys.attempt(TENANT, learner, "a1"),
        {"tenant_id": TENANT, "learner_id": learner, "attempt_id": "a1", "launched_at": LAUNCHED},
    )


def test_a_learner_that_appears_during_the_scan_does_not_break_the_order() -> None:
    reads = _Reads()
    ids = [f"john.{n:05d}" for n in range(3 * reports.CHUNK)]
    for learner in ids:
        _attempt(reads, learner)

    async def report() -> list[str]:
        out: list[str] = []
        chunks = reports.learner_rows(reads, 0, TENANT, CURRENT)
        first = await anext(chunks)
        out += [row[0] for row in first]
        # between two chunks the learner stage applies the first launch of learner `john`
        _attempt(reads, "john")
        async for chunk in chunks:
            out += [row[0] for row in chunk]
        return out

    out = asyncio.run(report())
    assert len(out) == len(set(out))
    assert out == sorted(out), (
        f"rows out of learner-id order: {out.index('john')} rows came before 'john', "
        f"the first of them {out[0]!r}"
    )
