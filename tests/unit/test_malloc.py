"""glibc malloc from the worker: statistics, and free pages given back to the OS (no broker)."""

from __future__ import annotations

from pathlib import Path

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
