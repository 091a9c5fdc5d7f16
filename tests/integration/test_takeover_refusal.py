"""A worker whose takeovers the group coordinator refuses takes nothing over, asks for a
rebalance, and counts exactly once the next takeover is confirmed.

`ACTIVE_LEARNERS_REFUSE_TAKEOVERS=2` makes the coordinator's answer to the first two takeovers
(one per stage at the first recovery) a no, as a deposed worker hears it
(streams/worker/faults.py). Without the rebalance the worker asks for, its partitions would
stay unowned while it goes on: nothing would count.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from streams.config.settings import Settings
from streams.domain.recount import recount
from streams.kafka.admin import ensure_topics
from streams.tools.dataset import DatasetSpec, generate
from tests.integration.harness import WorkerProcess, wait_for
from tests.integration.test_pipeline import counts_match, produce_in_order, split

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


def test_refused_takeovers_are_taken_over_again_and_count_exactly(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    records = list(generate(DatasetSpec(launches=3_000, tenants=3, seed=47, now=NOW)))
    launches, licenses = split(records)
    produce_in_order(settings, records)
    worker = WorkerProcess(
        settings, tmp_path / "worker.log", extra_env={"ACTIVE_LEARNERS_REFUSE_TAKEOVERS": "2"}
    ).start()
    try:
        wait_for(counts_match(settings, recount(launches, licenses, NOW)), 300, "exact counts")
        log = worker.log_text()
        assert log.count("refused by ACTIVE_LEARNERS_REFUSE_TAKEOVERS") == 2, worker.log_tail()
        assert "learner takeover: learner takeover of generation" in log
        assert "tenant takeover: tenant takeover of generation" in log
        assert "takes nothing over" in log
    finally:
        worker.stop()
