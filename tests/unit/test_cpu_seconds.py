"""The bench's CPU figures of a worker (`worker_process.cpu_seconds`): a process's user and system
time from /proc, with its children's; and its main threads' alone (`main_thread_cpu_seconds`)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from streams.tools import worker_process


def _burn(seconds: float) -> None:
    start = time_used = os.times()
    while (time_used := os.times()).user + time_used.system - start.user - start.system < seconds:
        sum(i * i for i in range(10_000))


def test_it_counts_the_cpu_the_process_used() -> None:
    before = worker_process.cpu_seconds(os.getpid())
    _burn(0.3)
    assert worker_process.cpu_seconds(os.getpid()) - before >= 0.25


def test_it_adds_the_childrens_cpu() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\n"
            "input()",
        ],
        stdin=subprocess.PIPE,
    )

    def beyond_own() -> float:  # what cpu_seconds counts besides this process's own time
        mine = os.times()
        return worker_process.cpu_seconds(os.getpid()) - mine.user - mine.system

    try:
        deadline = os.times().elapsed + 30
        # the child burns 0.5 s of CPU, then waits for its input
        while beyond_own() < 0.4:
            assert os.times().elapsed < deadline, "the child's CPU was never counted"
            os.sched_yield()
    finally:
        child.communicate(b"\n", timeout=30)


def test_without_the_children_file_it_counts_the_process_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = Path.read_text

    def no_children(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == "children":
            raise FileNotFoundError(self)
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    _burn(0.2)
    monkeypatch.setattr(Path, "read_text", no_children)
    assert worker_process.cpu_seconds(os.getpid()) >= 0.2


def test_a_process_that_is_gone_used_nothing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert worker_process.cpu_seconds(child.pid) == 0.0


def test_the_main_thread_figure_leaves_the_other_threads_out() -> None:
    main_before = worker_process.main_thread_cpu_seconds(os.getpid())
    all_before = worker_process.cpu_seconds(os.getpid())
    burner = threading.Thread(target=_burn_thread, args=(0.4,))
    burner.start()
    burner.join()
    assert worker_process.cpu_seconds(os.getpid()) - all_before >= 0.35
    assert worker_process.main_thread_cpu_seconds(os.getpid()) - main_before < 0.2
    _burn(0.3)  # (os.times counts every thread: the thread's 0.4 s are already in it)
    assert worker_process.main_thread_cpu_seconds(os.getpid()) - main_before >= 0.25


def _burn_thread(seconds: float) -> None:
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        sum(i * i for i in range(10_000))


def test_a_process_that_is_gone_used_nothing_in_its_main_thread() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert worker_process.main_thread_cpu_seconds(child.pid) == 0.0
