"""Which malloc a worker runs on: tcmalloc when this host has it, glibc's otherwise.

A worker frees as much memory as it allocates, but not in the same sizes. glibc's malloc keeps
what it cannot reuse, so a worker's RSS grew by 43-67 MB from 1M to 10M stored attempts;
tcmalloc (Debian's `libtcmalloc-minimal4`) sorts allocations into size classes and gives whole
free spans back, and its RSS grew by 20 MB, the SST index and filters' 16 MB included, at the
same launches/s, restore and deletion speeds (docs/benchmarks.md, "tcmalloc").

An allocator has to serve a process from its first allocation, so it can only come in through
the dynamic linker (`LD_PRELOAD`). `worker` therefore starts itself again, the same command with
the same process id, with tcmalloc preloaded, before it does anything else. ALLOCATOR chooses:
`auto` (the default: tcmalloc when the library is found, glibc's malloc otherwise, said in the
log), `tcmalloc` (a worker without it does not start), `glibc`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

TCMALLOC = "tcmalloc"
GLIBC = "glibc"
CHOICES = ("auto", TCMALLOC, GLIBC)
TCMALLOC_LIBRARY = "tcmalloc_minimal"  # libtcmalloc_minimal.so.4: no profiler, no libunwind
# set in the environment of the process started again: its check must not start it once more
# (a library the dynamic linker could not preload leaves glibc's malloc in place)
PRELOADED_MARK = "ACTIVE_LEARNERS_PRELOADED"


class AllocatorError(RuntimeError):
    """ALLOCATOR asks for an allocator this host cannot give (one line for the operator)."""


# a function only each allocator has, first match wins (as the dynamic linker's order does)
_SIGNATURES = (
    (TCMALLOC, "MallocExtension_ReleaseFreeMemory"),
    ("jemalloc", "mallctl"),
    ("mimalloc", "mi_version"),
)


def running() -> str:
    """The allocator serving this process: `tcmalloc`, `jemalloc` or `mimalloc` when its own API
    is in the process (preloaded), else `glibc`."""
    process = ctypes.CDLL(None)
    return next((name for name, symbol in _SIGNATURES if hasattr(process, symbol)), GLIBC)


def tcmalloc_library() -> str | None:
    """The file name the dynamic linker knows tcmalloc by (`libtcmalloc_minimal.so.4`), None
    when this host has none."""
    return ctypes.util.find_library(TCMALLOC_LIBRARY)


@dataclass(frozen=True)
class Plan:
    """What `worker` does about its allocator before it starts."""

    restart_env: dict[str, str] | None = None  # start again with this environment
    note: str = ""  # a line for the log (why glibc's malloc)


def plan(choice: str, now: str, library: str | None, env: Mapping[str, str]) -> Plan:
    """What to do with ALLOCATOR=`choice`, `now` the allocator running and `library` tcmalloc's
    file (None: not on this host). Raises AllocatorError when `choice` cannot be had."""
    if choice == GLIBC or now == TCMALLOC:
        return Plan()
    if now != GLIBC and choice != TCMALLOC:
        return Plan(note=f"malloc: {now} (preloaded by LD_PRELOAD; ALLOCATOR=auto keeps it)")
    if library is None or env.get(PRELOADED_MARK):
        why = (
            f"lib{TCMALLOC_LIBRARY} is not installed (Debian: libtcmalloc-minimal4)"
            if library is None
            else f"{library} was preloaded, yet is not serving this process"
        )
        if choice == TCMALLOC:
            raise AllocatorError(f"ALLOCATOR=tcmalloc, but {why}")
        return Plan(note=f"malloc: glibc's ({why})")
    preload = " ".join(part for part in (library, env.get("LD_PRELOAD", "")) if part)
    return Plan(restart_env={**env, "LD_PRELOAD": preload, PRELOADED_MARK: "1"})


def take(choice: str) -> str:
    """Run this process on the allocator ALLOCATOR=`choice` asks for: start it again with
    tcmalloc preloaded when it is to run on it and is not (`os.execve`: the same process id,
    arguments and open standard streams; this call does not return then). Returns a line for
    the log when it stays on glibc's malloc by default."""
    decided = plan(choice, running(), tcmalloc_library(), os.environ)
    if decided.restart_env is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], decided.restart_env)
    return decided.note
