"""RocksDB's memory, by table and kind, as gauges of /metrics (refreshed by a timer).

A worker's RSS grows with the data it holds even with bounded memtables and caches: RocksDB
keeps every SST file's index and filter blocks in memory outside the block cache. These gauges
show how much of a worker's memory is RocksDB's, and which part, without a profiler.
"""

from __future__ import annotations

from streams.stages import metrics
from streams.worker.app import app
from streams.worker.runtime import local_state

INTERVAL_S = 10.0


@app.timer(interval=INTERVAL_S)
async def sample_rocksdb_memory() -> None:
    for (table, kind), size in local_state.memory().items():
        metrics.rocksdb_memory.labels(table, kind).set(size)
