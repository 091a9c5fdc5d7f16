"""A short soak: the fault schedule of `make soak` at a small scale, with its garbage run."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.config.settings import Settings
from streams.kafka.admin import ensure_topics
from streams.tools.soak import SoakSpec, run_soak
from tests.integration.test_compound_faults import local_broker

pytestmark = pytest.mark.integration


def test_a_short_soak_passes_every_check(settings: Settings, tmp_path: Path) -> None:
    ensure_topics(settings)
    spec = SoakSpec(
        workers=2, launches=8_000, tenants=6, rounds=4, garbage=1_500, broker_faults=local_broker()
    )
    report = run_soak(settings, spec, tmp_path, log=lambda text: None)
    assert report.problems == [], report.summary()
    assert sum(report.faults.values()) == 4
    assert report.garbage_answered == report.garbage_records == 1_500
    assert report.windows_checked > 0 and report.attempts_checked > 0
    assert report.receipts_checked >= 4 and report.threshold_events_checked > 0
