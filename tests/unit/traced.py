"""Memory an object graph takes, measured with tracemalloc in the test's own interpreter (object
sizes differ between Python versions, so the memory tests compare against figures measured the
same way rather than against constants alone)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def traced(make: Callable[[], T]) -> tuple[T, int]:
    """What `make` returns, and the bytes it left allocated (what it returns, and keeps)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = make()
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return kept, used
