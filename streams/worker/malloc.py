"""glibc malloc from Python (ctypes): its statistics, its mmap threshold, and giving its free
pages back to the OS.

Without glibc (or with one older than 2.33) each does nothing and says so by its result.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Iterator
from contextlib import contextmanager


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


def _libc_function(name: str, restype: type) -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        function = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None  # not glibc, or an older one: the malloc gauges stay absent
    function.restype = restype
    return function


MALLINFO2 = _libc_function("mallinfo2", _MallInfo2)
MALLOC_TRIM = _libc_function("malloc_trim", ctypes.c_int)
MALLOPT = _libc_function("mallopt", ctypes.c_int)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value: the one measured fixed
HEAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's ceiling for it (64-bit): during a restore
# Free memory at the heap's top beyond this goes back to the OS at once: glibc's dynamic value
# ends at twice its mmap threshold's ceiling. The trim every 10 s gives it back anyway.
TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024

_fixed_at: int | None = None  # the threshold this process fixed; None: glibc decides
_heap_users = 0  # restores under way that take their large buffers from the heap


def malloc_bytes() -> dict[str, int]:
    """glibc malloc's bytes over all arenas: `in_use` (allocated, mmapped chunks included) and
    `free` (freed, kept by malloc for reuse: resident where it was touched); {} without glibc."""
    if MALLINFO2 is None:
        return {}
    info = MALLINFO2()
    return {"in_use": info.uordblks + info.hblkhd, "free": info.fordblks}


def trim_malloc() -> float:
    """Give the pages of malloc's free chunks back to the OS (glibc `malloc_trim(0)`); the
    seconds it took (0.0 without glibc).

    The worker frees as much as it allocates, but not in the same sizes: glibc keeps the freed
    chunks it cannot reuse for later requests, resident, in every arena (measured: +54 MB from 1M
    to 10M attempts, more than half of the worker's growth). Trimmed pages cost a page fault
    when malloc reuses them."""
    if MALLOC_TRIM is None:
        return 0.0
    started = time.perf_counter()
    MALLOC_TRIM(0)
    return time.perf_counter() - started


def fix_mmap_threshold(nbytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Serve every allocation of `nbytes` or more with a mapping of its own, for good; True
    when set (False without glibc's `mallopt`). The worker does it with MALLOC_MMAP_FIXED_KB.

    glibc starts at 128 KiB but raises the threshold to the size of each mapped chunk freed,
    up to 32 MiB. The worker frees buffers of a MiB early (Kafka batches, RocksDB memtable
    blocks), so from then on such sizes come from malloc's arenas, where they end up between
    long-lived chunks: from 1M to 9M attempts, malloc's freed-but-kept bytes grew from 43 to
    94 MB. Fixed at 128 KiB, they stayed between 6 and 26 MB and the peak RSS was 415-421 MB
    instead of 463; but every large buffer is then mapped afresh and its pages faulted in,
    which cost about a tenth of the launches/s (docs/benchmarks.md, "A fixed mmap threshold").
    """
    global _fixed_at
    if MALLOPT is None or not MALLOPT(M_MMAP_THRESHOLD, nbytes):
        return False
    # a fixed mmap threshold also fixes the trim threshold, at glibc's 128 KiB: each large
    # free at the heap's top would give back pages that the next allocation faults in again
    MALLOPT(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    _fixed_at = nbytes
    return True


@contextmanager
def large_buffers_from_the_heap() -> Iterator[None]:
    """While a restore runs, take large buffers from malloc's heap as glibc would by default.

    A restore moves gigabytes through buffers of several MiB (fetches, WriteBatches). Mapped
    afresh each time, every page of them costs a page fault: restores were a quarter slower
    with the fixed threshold, and as fast as glibc's default with this (docs/benchmarks.md).
    From the heap they are reused; what they leave free there goes back to the OS with the
    next `trim_malloc`. Does nothing unless this process fixed the threshold; nested uses keep
    the heap until the last one ends."""
    global _heap_users
    if _fixed_at is None or MALLOPT is None:
        yield
        return
    _heap_users += 1
    if _heap_users == 1:
        MALLOPT(M_MMAP_THRESHOLD, HEAP_THRESHOLD_BYTES)
    try:
        yield
    finally:
        _heap_users -= 1
        if _heap_users == 0:
            MALLOPT(M_MMAP_THRESHOLD, _fixed_at)
