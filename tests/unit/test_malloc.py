"""glibc malloc from the worker: statistics, its mmap threshold, and free pages given back to the
OS (no broker)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streams.config.settings import ConfigError, Settings
from streams.worker.malloc import malloc_bytes, trim_malloc


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_trimming_gives_free_pages_between_live_chunks_back() -> None:
    """Runs of freed chunks between live ones stay resident until malloc is trimmed."""
    chunks: list[bytearray | None] = [bytearray(2000) for _ in range(100_000)]  # ~200 MB
    for start in range(0, len(chunks), 100):
        chunks[start + 1 : start + 60] = [None] * 59  # free 59 of every 100, in runs
    before = rss_mb()
    assert malloc_bytes()["free"] > 100 << 20, "the freed runs are malloc's, not the OS's"
    assert trim_malloc() > 0.0
    assert rss_mb() < before - 50, "the runs' pages went back to the OS"
    assert sum(len(c) for c in chunks if c is not None) == 41 * 1000 * 2000  # the live ones stay


# In a process of its own (the threshold is process-wide and cannot be read back): after a mapped
# 4 MiB chunk was freed, is a new 1 MiB chunk mapped (1) or taken from malloc's arenas (0)? Once
# as glibc does by default, once with the threshold fixed, and inside a restore's heap window.
MAPPED_AFTER_A_BIG_FREE = """
import ctypes, sys
from contextlib import nullcontext
from streams.worker.malloc import MALLINFO2, fix_mmap_threshold, large_buffers_from_the_heap
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
mode = sys.argv[1]
if mode != "glibc default":
    assert fix_mmap_threshold()
libc.free(libc.malloc(4 << 20))
window = large_buffers_from_the_heap() if mode == "restoring" else nullcontext()
with window:
    before = MALLINFO2().hblks
    chunk = libc.malloc(1 << 20)
    mapped = MALLINFO2().hblks - before
before = MALLINFO2().hblks
after_window = libc.malloc(1 << 20)
print(mapped, MALLINFO2().hblks - before)
"""


def mapped_after_a_big_free(mode: str) -> tuple[int, int]:
    """(mapped inside the window, mapped after it) for `mode`."""
    done = subprocess.run(
        [sys.executable, "-c", MAPPED_AFTER_A_BIG_FREE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    inside, after = done.stdout.split()
    return int(inside), int(after)


def test_a_fixed_threshold_keeps_large_chunks_out_of_the_arenas() -> None:
    """glibc raises its threshold to the size of a mapped chunk freed, so that later chunks of
    1 MiB stay in its arenas, where they fragment; fixed, they keep a mapping of their own."""
    assert mapped_after_a_big_free("glibc default") == (0, 0)
    assert mapped_after_a_big_free("fixed") == (1, 1)


def test_a_restore_takes_large_buffers_from_the_heap_and_then_maps_them_again() -> None:
    assert mapped_after_a_big_free("restoring") == (0, 1)


def test_the_fixed_threshold_is_a_setting_off_by_default() -> None:
    assert Settings.from_env({}).malloc_mmap_fixed_kb == 0
    assert Settings.from_env({"MALLOC_MMAP_FIXED_KB": "128"}).malloc_mmap_fixed_kb == 128
    with pytest.raises(ConfigError, match="MALLOC_MMAP_FIXED_KB must be a whole number"):
        Settings.from_env({"MALLOC_MMAP_FIXED_KB": "128k"})
    with pytest.raises(ConfigError, match="at most 32768 \\(glibc's\\), got 65536"):
        Settings.from_env({"MALLOC_MMAP_FIXED_KB": "65536"})
