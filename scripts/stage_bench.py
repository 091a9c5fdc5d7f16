"""The learner stage alone, timed: no broker, no faust, no launch reader.

    .venv/bin/python scripts/stage_bench.py [--launches N] [--rocksdb] [--seed S]

Bench-like tracked launches (half of them one big tenant's 4,000 learners, the rest over 200
tenants of skewed sizes, 400 days of launch times) go to one learner partition in `Attempts`
commands of 167 launches, 64 commands a group, as the worker hands them over in a backlog; each
group is one `DurableBatch` flushed to the simulator's in-memory log. The state is the
simulator's memory state, or with `--rocksdb` the worker's own `RocksState` over rocksdict
databases opened with the worker's options (in a temporary folder).

It prints the main thread's CPU a launch, and checks what it timed: every tenant's total
learners in the stage's counters equal a recount of the launches (exit status 1 otherwise).
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

from streams.stages import commands
from streams.stages.batch import DurableBatch
from streams.stages.learners import LearnerStage
from streams.stages.memory import MemoryLog, MemoryState
from streams.stages.ownership import Ownership
from streams.stages.store import TABLES
from streams.worker.state import RocksState
from streams.worker.tables import TunedRocksDBOptions, rocksdb_options

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

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name
        self._dbs: dict[int, Any] = {}

    def _db_for_partition(self, partition: int) -> Any:
        db = self._dbs.get(partition)
        if db is None:
            faust_options = RocksDBOptions(**rocksdb_options())  # type: ignore[arg-type]
            options = TunedRocksDBOptions.of(faust_options).as_options()
            db = self._dbs[partition] = rocksdict.Rdict(
                str(self.folder / f"{self.name}-{partition}"), options
            )
        return db

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()


class _Table:
    def __init__(self, folder: Path, name: str) -> None:
        self.data = _Databases(folder, name)


async def run(launches: int, seed: int, folder: Path | None) -> tuple[float, dict[str, int]]:
    """(CPU seconds of this thread a launch, each tenant's total learners in the counters)."""
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
        tables = {name: _Table(folder, name) for name in TABLES}
        state = RocksState(tables)  # type: ignore[arg-type]
    ownership = Ownership()
    ownership.claim("learner", 0, (1, 0))
    log = MemoryLog(1)
    stage = LearnerStage(1, clock=lambda: NOW)
    started = time.thread_time()
    for first in range(0, len(encoded), GROUP_COMMANDS):
        batch = DurableBatch(state, log, ownership)
        for offset, command in enumerate(encoded[first : first + GROUP_COMMANDS], first):
            await stage.handle(batch, command, 0, offset)
        await batch.flush()
    cpu = (time.thread_time() - started) / launches
    totals = {}
    for tenant in {row[0] for row in rows}:
        counts = stage.counters.get(0, tenant)
        totals[tenant] = counts.total if counts is not None else 0
    for table in tables.values():
        table.data.close()
    return cpu, totals


def recount(launches: int, seed: int) -> dict[str, int]:
    """Each tenant's distinct learners among the launches (every one is tracked and new)."""
    learners: dict[str, set[str]] = {}
    for row in bench_rows(launches, seed):
        learners.setdefault(row[0], set()).add(row[1])
    return {tenant: len(ids) for tenant, ids in learners.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=200_000, help="launches (default 200,000)")
    parser.add_argument("--seed", type=int, default=7, help="the launches' random seed")
    parser.add_argument("--rocksdb", action="store_true", help="RocksState over rocksdict DBs")
    args = parser.parse_args(argv)
    if args.launches < 1:
        parser.error("--launches must be at least 1")
    with tempfile.TemporaryDirectory(prefix="stage-bench-") as folder:
        cpu, totals = asyncio.run(
            run(args.launches, args.seed, Path(folder) if args.rocksdb else None)
        )
    expected = recount(args.launches, args.seed)
    state = "RocksDB" if args.rocksdb else "in-memory"
    print(
        f"learner stage alone ({state} state): {cpu * 1e6:.2f} us of CPU a launch "
        f"({args.launches:,} launches)"
    )
    wrong = sorted(t for t in expected if totals.get(t) != expected[t])
    if wrong:
        print(
            f"counts wrong for {len(wrong)} tenants, e.g. {wrong[0]}: "
            f"{totals.get(wrong[0])} learners, {expected[wrong[0]]} launched",
            file=sys.stderr,
        )
        return 1
    print(f"counts exact: {sum(totals.values()):,} learners of {len(totals)} tenants")
    return 0


if __name__ == "__main__":
    sys.exit(main())
