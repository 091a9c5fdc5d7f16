"""Where a worker's memory is, as gauges of /metrics (refreshed by a timer).

A worker's RSS grows with the data it holds even with bounded memtables and caches. These gauges
split it without a profiler: RocksDB's memory by table and kind (its SST files' index and filter
blocks live outside the block cache and grow with the data), glibc malloc's bytes in use and
free-but-kept (what fragmentation costs), and the objects Python has allocated.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

from streams.stages import metrics
from streams.worker.app import app
from streams.worker.runtime import local_state

INTERVAL_S = 10.0


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (glibc 2.33 and later)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo2() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None  # not glibc, or an older one: the malloc gauges stay absent
    function.restype = _MallInfo2
    return function


MALLINFO2 = _mallinfo2()


def malloc_bytes() -> dict[str, int]:
    """glibc malloc's bytes over all arenas: `in_use` (allocated, mmapped chunks included) and
    `free` (freed, kept by malloc for reuse: resident where it was touched); {} without glibc."""
    if MALLINFO2 is None:
        return {}
    info = MALLINFO2()
    return {"in_use": info.uordblks + info.hblkhd, "free": info.fordblks}


@app.timer(interval=INTERVAL_S)
async def sample_memory() -> None:
    for (table, kind), size in local_state.memory().items():
        metrics.rocksdb_memory.labels(table, kind).set(size)
    for kind, size in malloc_bytes().items():
        metrics.malloc_bytes.labels(kind).set(size)
    metrics.python_blocks.set(sys.getallocatedblocks())
