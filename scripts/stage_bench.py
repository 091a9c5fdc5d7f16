"""The learner stage alone, timed: no broker, no running faust app, no launch reader.

    .venv/bin/python scripts/stage_bench.py [--launches N] [--rocksdb] [--seed S]

Bench-like tracked launches (half of them one big tenant's 4,000 learners, the rest over 200
tenants of skewed sizes, 400 days of launch times) go to one learner partition in `Attempts`
commands of 167 launches, 64 commands a group, as the worker hands them over in a backlog; each
group is one `DurableBatch` flushed to the simulator's in-memory log. The state is the
simulator's memory state, or with `--rocksdb` the worker's own `RocksState` over rocksdict
databases opened with the worker's options (in a temporary folder).

It prints the main thread's CPU a launch, and checks what it timed: every tenant's active
learners in each window and its total learners, in the stage's counters, equal the independent
recount of the launches (streams/domain/recount.py; exit status 1 otherwise).
docs/benchmarks.md quotes it as "the learner stage alone" (memory) and "the learner stage alone
over real RocksDB" (`--rocksdb`): a guide to the direction of a step before the end-to-end pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from streams.cli.ops import tune_garbage_collector
from streams.domain.recount import recount as independent_recount
from streams.stages import commands
from streams.stages.batch import DurableBatch
from streams.stages.learners import LearnerStage
from streams.stages.memory import MemoryLog, MemoryState
from streams.stages.ownership import Ownership
from streams.stages.store import TABLES
from streams.worker.state import RocksState
from streams.worker.tables import TunedRocksDBOptions, block_cache, rocksdb_options

# {(tenant, window start): (active learners, total learners)}
Counts = dict[tuple[str, str], tuple[int, int]]

COMMAND_LAUNCHES = 167
GROUP_COMMANDS = 64
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def bench_rows(launches: int, seed: int) -> list[list[Any]]:
    """Rows of `Attempts` commands (streams/stages/commands.py), the bench's mix of tenants."""
    rng = random.Random(seed)
    start = NOW - timedelta(days=400)
    span = int((NOW - start).total_seconds())
    rows: list[list[Any]] = []
    for n in range(launches):
        if rng.random() < 0.5:
            tenant, learner = "big", f"l{rng.randrange(4_000):07d}"
        else:
            tenant = f"bench-{int(200 * rng.random() ** 2):04d}"
            learner = f"l{int(52 * rng.random() ** 2):07d}"
        launched_at = (start + timedelta(seconds=rng.randrange(span))).isoformat()
        rows.append(
            [
                tenant,
                learner,
                f"el{n % 300}",
                f"a{n}",
                launched_at,
                0,
                n,
                '{"x":1}',
                1_700_000_000_000 + n,
            ]
        )
    return rows


class _Databases:
    """What `RocksState` reads of a faust table (`table.data`): its partitions' rocksdict DBs."""

    def __init__(self, folder: Path, name: str, cache: rocksdict.Cache) -> None:
        self.folder, self.name, self.cache = folder, name, cache
        self._dbs: dict[int, Any] = {}

    def _db_for_partition(self, partition: int) -> Any:
        db = self._dbs.get(partition)
        if db is None:
            faust_options = RocksDBOptions(**rocksdb_options())  # type: ignore[arg-type]
            options = TunedRocksDBOptions.of(faust_options, self.cache).as_options()
            db = self._dbs[partition] = rocksdict.Rdict(
                str(self.folder / f"{self.name}-{partition}"), options
            )
        return db

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()


class _Table:
    def __init__(self, folder: Path, name: str, cache: rocksdict.Cache) -> None:
        self.data = _Databases(folder, name, cache)


async def run(launches: int, seed: int, folder: Path | None) -> tuple[float, Counts]:
    """(CPU seconds of this thread a launch, what the stage's counters hold at the end:
    {(tenant, window start): (active learners, total learners)} for every window with some)."""
    rows = bench_rows(launches, seed)
    encoded = [
        commands.encode(commands.Attempts("launches", rows[i : i + COMMAND_LAUNCHES]))
        for i in range(0, len(rows), COMMAND_LAUNCHES)
    ]
    tables: dict[str, _Table] = {}
    state: Any
    if folder is None:
        state = MemoryState()
    else:
        cache = block_cache()  # one for every DB, as in the worker
        tables = {name: _Table(folder, name, cache) for name in TABLES}
        state = RocksState(tables)  # type: ignore[arg-type]
    ownership = Ownership()
    ownership.claim("learner", 0, (1, 0))
    log = MemoryLog(1)
    stage = LearnerStage(1, clock=lambda: NOW)
    try:
        started = time.thread_time()
        for first in range(0, len(encoded), GROUP_COMMANDS):
            batch = DurableBatch(state, log, ownership)
            for offset, command in enumerate(encoded[first : first + GROUP_COMMANDS], first):
                await stage.handle(batch, command, 0, offset)
            await batch.flush()
        cpu = (time.thread_time() - started) / launches
    finally:
        for table in tables.values():
            table.data.close()
    counted: Counts = {}
    for tenant in {row[0] for row in rows}:
        counts = stage.counters.get(0, tenant)
        if counts is None:
            continue
        for window, active in counts.windows.items():
            if active:
                counted[(tenant, window)] = (active, counts.total)
    return cpu, counted


def recount(launches: int, seed: int) -> Counts:
    """The same, by the independent recount of the tests and the bench (streams/domain/recount.py:
    plain sets over the launches, no license: every tenant under the default cut, as in the
    stage)."""
    launched = (
        {
            "tenant_id": row[0],
            "learner_id": row[1],
            "element_id": row[2],
            "attempt_id": row[3],
            "launched_at": row[4],
        }
        for row in bench_rows(launches, seed)
    )
    return independent_recount(launched, {}, NOW)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=200_000, help="launches (default 200,000)")
    parser.add_argument("--seed", type=int, default=7, help="the launches' random seed")
    parser.add_argument("--rocksdb", action="store_true", help="RocksState over rocksdict DBs")
    args = parser.parse_args(argv)
    if args.launches < 1:
        parser.error("--launches must be at least 1")
    tune_garbage_collector()  # as the worker does (`active-learners worker`)
    with tempfile.TemporaryDirectory(prefix="stage-bench-") as folder:
        cpu, counted = asyncio.run(
            run(args.launches, args.seed, Path(folder) if args.rocksdb else None)
        )
    expected = recount(args.launches, args.seed)
    state = "RocksDB" if args.rocksdb else "in-memory"
    print(
        f"learner stage alone ({state} state): {cpu * 1e6:.2f} us of CPU a launch "
        f"({args.launches:,} launches)"
    )
    wrong = sorted(
        set(expected) ^ set(counted) | {k for k in expected if counted.get(k) != expected[k]}
    )
    if wrong:
        tenant, window = wrong[0]
        print(
            f"counts wrong in {len(wrong)} tenant windows, e.g. {tenant} {window}: "
            f"(active, total) {counted.get(wrong[0])} counted, {expected.get(wrong[0])} recounted",
            file=sys.stderr,
        )
        return 1
    tenants = {tenant for tenant, _ in counted}
    print(f"counts exact: {len(counted):,} windows of {len(tenants)} tenants, active and total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
