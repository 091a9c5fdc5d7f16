"""The stages' chunk sizes in the simulator (streams/tools/simulate/runner.py, `_chunk_bounds`).

The service reads and sends in chunks of thousands of rows or 256 KB, which a schedule's few
hundred records never fill: a scan that goes on after its first chunk, partial counts cut into
several commands and a report's learner spanning two chunks never ran under the simulator's
crashes and replays. Half the seeds now lower the sizes to a few rows or bytes. Each test below
puts a chunking bug back and needs those seeds to see it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from streams.domain import reports as report_rules
from streams.stages import keys, learners, reports, store, tenant_deletions, tenants
from streams.stages.batch import DurableBatch
from streams.tools.simulate import runner
from streams.tools.simulate.runner import _chunk_bounds, _patched, generate, run


def failing(seeds: Iterable[int]) -> list[int]:
    return [seed for seed in seeds if not run(generate(seed)).ok]


def test_half_the_seeds_lower_the_chunks_and_the_sizes_come_back() -> None:
    def sizes() -> tuple[int, ...]:
        return (
            learners.SCAN_CHUNK,
            learners.PARTIALS_MAX_BYTES,
            reports.CHUNK,
            store.SCAN_ALL_CHUNK,
        )

    service = sizes()
    lowered = [seed for seed in range(100) if _chunk_bounds(seed)]
    assert 30 <= len(lowered) <= 70
    with _patched(_chunk_bounds(lowered[0])):
        assert learners.SCAN_CHUNK < 10 and reports.CHUNK < 10 and store.SCAN_ALL_CHUNK < 10
    assert sizes() == service


def test_a_size_a_test_lowered_by_hand_stays_as_low(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(learners, "SCAN_CHUNK", 1)
    drawn = [_chunk_bounds(seed) for seed in range(40)]
    assert all(value == 1 for bounds in drawn for _, name, value in bounds if name == "SCAN_CHUNK")
    assert any(bounds for bounds in drawn)


def test_the_checks_see_a_scan_that_skips_the_first_row_of_its_next_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = DurableBatch.scan

    def skipping(self: DurableBatch, *args: Any, **kwargs: Any) -> list[tuple[bytes, Any]]:
        rows = real(self, *args, **kwargs)
        after = args[3] if len(args) > 3 else kwargs.get("after")
        return rows[1:] if after is not None else rows

    monkeypatch.setattr(DurableBatch, "scan", skipping)
    assert failing((3, 5, 12)), "no seed noticed rows lost between a scan's chunks"


def test_the_checks_see_partial_counts_that_keep_only_their_first_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = learners.chunks_by_size
    monkeypatch.setattr(learners, "chunks_by_size", lambda *args: real(*args)[:1])
    assert failing((5, 33, 57, 59)), "no seed noticed partial counts of a later command lost"


def test_the_checks_see_a_report_that_splits_a_learner_between_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def split(
        state: Any, partition: int, tenant_id: str, chunk: int | None = None
    ) -> AsyncIterator[list[Any]]:
        chunk = chunk or reports.CHUNK
        prefix, after = keys.attempts_of_tenant(tenant_id), None
        while rows := state.scan(keys.ATTEMPTS, partition, prefix, after, chunk):
            after = rows[-1][0]
            yield list(report_rules.learners_of(rows, len(prefix)))

    monkeypatch.setattr(reports, "tenant_learners", split)
    assert failing((3, 5, 19)), "no seed noticed a learner reported twice across chunks"


@pytest.mark.parametrize(
    ("module", "seeds"), [(tenants, (0, 4, 5)), (tenant_deletions, (12, 17, 38))]
)
def test_the_checks_see_a_tenant_stage_scan_that_skips_a_row_between_chunks(
    monkeypatch: pytest.MonkeyPatch, module: Any, seeds: tuple[int, ...]
) -> None:
    """The tenant stages read their published counts, thresholds, pending threshold events,
    partial counts and deletion parts' reports with `scan_all`, a thousand rows at a time unless
    lowered (store.SCAN_ALL_CHUNK)."""

    def skipping(
        batch: Any,
        table: str,
        partition: int,
        prefix: bytes,
        chunk: int | None = None,
        raw: bool = False,
    ) -> list[tuple[bytes, Any]]:
        chunk = chunk or store.SCAN_ALL_CHUNK
        scan = batch.scan_raw if raw else batch.scan
        rows: list[tuple[bytes, Any]] = []
        after = None
        while True:
            found = list(scan(table, partition, prefix, after, chunk))
            rows.extend(found[1:] if after is not None else found)
            if len(found) < chunk:
                return rows
            after = found[-1][0]

    monkeypatch.setattr(module, "scan_all", skipping)
    assert failing(seeds), "no seed noticed a row lost between the chunks of a tenant scan"
    monkeypatch.setattr(runner, "_chunk_bounds", lambda seed: [])
    assert not failing(seeds), "seen with the service's sizes: the draw is not what finds it"
