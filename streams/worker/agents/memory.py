"""Where a worker's memory is, as gauges of /metrics (refreshed by a timer).

A worker's RSS grows with the data it holds even with bounded memtables and caches. These gauges
split it without a profiler: RocksDB's memory by table and kind (its SST files' index and filter
blocks live outside the block cache and grow with the data), glibc malloc's bytes in use and
free-but-kept (what fragmentation costs), and the objects Python has allocated. The same
timer gives malloc's free pages back to the OS (`trim_malloc`).
"""

from __future__ import annotations

import sys

from streams.stages import metrics
from streams.worker.agents.timers import survives
from streams.worker.app import app
from streams.worker.malloc import malloc_bytes, trim_malloc
from streams.worker.runtime import local_state

INTERVAL_S = 10.0


@app.timer(interval=INTERVAL_S)
@survives("memory")
async def sample_memory() -> None:
    metrics.malloc_trim_seconds.inc(trim_malloc())
    for (table, kind), size in local_state.memory().items():
        metrics.rocksdb_memory.labels(table, kind).set(size)
    for kind, size in malloc_bytes().items():
        metrics.malloc_bytes.labels(kind).set(size)
    metrics.python_blocks.set(sys.getallocatedblocks())
