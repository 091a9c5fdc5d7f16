"""The worker's allocator: tcmalloc preloaded by starting the process again, glibc's malloc when
asked or when the host has no tcmalloc (no broker)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.config.settings import ConfigError, Settings
from streams.worker.allocator import (
    PRELOADED_MARK,
    AllocatorError,
    plan,
    tcmalloc_library,
)

LIBRARY = "libtcmalloc_minimal.so.4"
ROOT = Path(__file__).resolve().parents[2]


def needs_tcmalloc() -> str:
    """tcmalloc's library on this host: `make test` installs it (Debian's package). CI fails
    without it, never skips; elsewhere the test is skipped."""
    library = tcmalloc_library()
    if library is None:
        if os.environ.get("CI"):
            pytest.fail("libtcmalloc-minimal4 is not installed (make tcmalloc)")
        pytest.skip("libtcmalloc-minimal4 is not installed (make tcmalloc)")
    return library


@pytest.mark.parametrize(
    ("choice", "running"),
    [("glibc", "glibc"), ("glibc", "tcmalloc"), ("auto", "tcmalloc"), ("tcmalloc", "tcmalloc")],
)
def test_a_worker_on_the_allocator_it_asks_for_starts_as_it_is(choice: str, running: str) -> None:
    assert plan(choice, running, LIBRARY, {}).restart_env is None
    assert plan(choice, running, LIBRARY, {}).note == ""


@pytest.mark.parametrize("choice", ["auto", "tcmalloc"])
def test_a_worker_on_glibc_starts_again_with_tcmalloc_preloaded(choice: str) -> None:
    env = {"PATH": "/usr/bin", "LD_PRELOAD": "libother.so"}
    decided = plan(choice, "glibc", LIBRARY, env)
    assert decided.restart_env == {
        "PATH": "/usr/bin",
        "LD_PRELOAD": f"{LIBRARY} libother.so",  # the operator's own preload kept
        PRELOADED_MARK: "1",
    }
    assert plan(choice, "glibc", LIBRARY, {}).restart_env == {
        "LD_PRELOAD": LIBRARY,
        PRELOADED_MARK: "1",
    }


def test_auto_keeps_another_allocator_the_operator_preloaded() -> None:
    env = {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}
    decided = plan("auto", "jemalloc", LIBRARY, env)
    assert decided.restart_env is None
    assert decided.note == "malloc: jemalloc (preloaded by LD_PRELOAD; ALLOCATOR=auto keeps it)"
    # asked for by name, tcmalloc comes first (the dynamic linker takes the first definition)
    assert plan("tcmalloc", "jemalloc", LIBRARY, env).restart_env == {
        "LD_PRELOAD": f"{LIBRARY} /usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
        PRELOADED_MARK: "1",
    }


def test_without_tcmalloc_auto_stays_on_glibc_and_says_why() -> None:
    decided = plan("auto", "glibc", None, {})
    assert decided.restart_env is None
    assert decided.note == (
        "malloc: glibc's (libtcmalloc_minimal is not installed (Debian: libtcmalloc-minimal4))"
    )
    with pytest.raises(
        AllocatorError, match=r"^ALLOCATOR=tcmalloc, but libtcmalloc_minimal is not"
    ):
        plan("tcmalloc", "glibc", None, {})


def test_a_preload_the_linker_ignored_never_starts_the_worker_a_third_time() -> None:
    marked = {PRELOADED_MARK: "1", "LD_PRELOAD": LIBRARY}
    decided = plan("auto", "glibc", LIBRARY, marked)
    assert decided.restart_env is None
    assert "was preloaded, yet is not serving this process" in decided.note
    with pytest.raises(AllocatorError, match="was preloaded, yet is not serving"):
        plan("tcmalloc", "glibc", LIBRARY, marked)


def test_the_allocator_setting() -> None:
    assert Settings.from_env({}).allocator == "auto"
    assert Settings.from_env({"ALLOCATOR": " TCMalloc "}).allocator == "tcmalloc"
    assert Settings.from_env({"ALLOCATOR": "glibc"}).allocator == "glibc"
    with pytest.raises(
        ConfigError, match=r"^ALLOCATOR must be one of auto, tcmalloc, glibc, got 'je'"
    ):
        Settings.from_env({"ALLOCATOR": "je"})
    # MALLOC_MMAP_FIXED_KB tunes glibc's malloc: it keeps `auto` there, and contradicts tcmalloc
    assert Settings.from_env({"MALLOC_MMAP_FIXED_KB": "128"}).allocator == "glibc"
    with pytest.raises(ConfigError, match="cannot go with ALLOCATOR=tcmalloc"):
        Settings.from_env({"MALLOC_MMAP_FIXED_KB": "128", "ALLOCATOR": "tcmalloc"})


# Run as a program: `take` starts it again on tcmalloc, the same process with the same arguments;
# each start prints its process id, its arguments and the allocator serving it.
STARTS_AGAIN = """
import os, sys
from streams.worker.allocator import running, take
print(os.getpid(), sys.argv[1:], running(), flush=True)
note = take(sys.argv[1])
print("stayed", os.getpid(), running(), repr(note), flush=True)
"""


def run_program(choice: str) -> list[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    environment.pop("LD_PRELOAD", None)
    environment.pop(PRELOADED_MARK, None)
    done = subprocess.run(
        [sys.executable, "-c", STARTS_AGAIN, choice],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


def test_auto_starts_the_process_again_on_tcmalloc_under_the_same_id() -> None:
    needs_tcmalloc()
    first, second, stayed = run_program("auto")
    pid = first.split()[0]
    assert first == f"{pid} ['auto'] glibc"
    assert second == f"{pid} ['auto'] tcmalloc"  # the same process, arguments, now on tcmalloc
    assert stayed == f"stayed {pid} tcmalloc ''"


def test_glibc_keeps_the_process_as_it_is() -> None:
    first, stayed = run_program("glibc")
    pid = first.split()[0]
    assert first == f"{pid} ['glibc'] glibc"
    assert stayed == f"stayed {pid} glibc ''"


# tcmalloc's statistics and its free memory given back, in a process of its own on tcmalloc
TCMALLOC_GIVES_BACK = """
from pathlib import Path
from streams.worker.malloc import fix_mmap_threshold, malloc_bytes, trim_malloc

def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

buffers = [bytearray(1 << 20) for _ in range(200)]
in_use = malloc_bytes()["in_use"]
del buffers
freed = malloc_bytes()["free"]
before = rss_mb()
seconds = trim_malloc()
left = malloc_bytes()["free"]
print(in_use >> 20, freed >> 20, left >> 20, round(before - rss_mb()), seconds > 0,
      fix_mmap_threshold())
"""


def test_on_tcmalloc_the_gauges_read_it_and_the_trim_gives_its_free_spans_back() -> None:
    library = needs_tcmalloc()
    done = subprocess.run(
        [sys.executable, "-c", TCMALLOC_GIVES_BACK],
        env={**os.environ, "PYTHONPATH": str(ROOT), "LD_PRELOAD": library},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    in_use, freed, left, given_back, timed, glibc_tuned = done.stdout.split()
    assert int(in_use) >= 200, "200 MiB of buffers are in use"
    assert int(freed) >= 190, "freed, they stay tcmalloc's"
    assert int(left) < 20, "the trim gave its free spans back"
    assert int(given_back) >= 150, "and the RSS fell with it"
    assert timed == "True"
    assert glibc_tuned == "False", "glibc's mmap threshold means nothing on tcmalloc"
