"""`worker --processes N`: one child killed mid-stream, the set restarted (partitions move
between the children's state folders), counts still exact."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from streams.config.settings import Settings
from streams.domain.recount import recount
from streams.kafka.admin import ensure_topics
from streams.tools.dataset import DatasetSpec, generate
from tests.integration.harness import WorkerProcess, wait_for
from tests.integration.test_pipeline import NOW, counts_match, produce_in_order, split

pytestmark = pytest.mark.integration


def children_of(process: WorkerProcess) -> list[int]:
    assert process.process is not None
    pid = process.process.pid
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_child_killed_mid_stream_then_the_set_restarted_counts_exactly(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    records = list(generate(DatasetSpec(launches=12000, tenants=5, seed=29, now=NOW)))
    launches, licenses = split(records)
    licenses_first = [r for r in records if "cycle_start" in r]
    half = len(launches) // 2
    expected = recount(launches, licenses, NOW)
    log = tmp_path / "set.log"
    pair = WorkerProcess(settings, log, args=["--processes", "2"])
    trio: WorkerProcess | None = None
    try:
        pair.start()
        pair.wait_ready(180, processes=2)
        produce_in_order(settings, licenses_first + launches[:half])
        os.kill(children_of(pair)[0], signal.SIGKILL)  # mid-stream
        assert pair.process is not None
        assert pair.process.wait(timeout=60) == 128 + signal.SIGKILL, pair.log_tail()

        # the set restarted as 3 (partitions move between state folders), the rest produced
        trio = WorkerProcess(settings, log, args=["--processes", "3"])
        trio.start()
        trio.wait_ready(180, processes=3)
        produce_in_order(settings, launches[half:])
        wait_for(counts_match(settings, expected), 300, "exact counts after the kill")
        trio.stop()
        assert trio.process is not None and trio.process.returncode == 0, trio.log_tail()

        # back to 2, with a third of the launches again (a replay): still exact
        pair = WorkerProcess(settings, log, args=["--processes", "2"])
        pair.start()
        pair.wait_ready(180, processes=2)
        produce_in_order(settings, launches[::3])
        wait_for(counts_match(settings, expected), 300, "exact counts after the replay")
        pair.check_alive()
    finally:
        pair.stop()
        if trio is not None:
            trio.stop()
