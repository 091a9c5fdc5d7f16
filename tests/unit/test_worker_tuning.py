"""The worker's process tuning (no broker)."""

from __future__ import annotations

import gc

import pytest

from streams.cli.ops import tune_garbage_collector


@pytest.fixture
def restored_gc():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_the_collector_runs_less_often_and_skips_what_existed_at_start(restored_gc) -> None:
    tune_garbage_collector()
    assert gc.get_threshold() == (50_000, 20, 20)
    assert gc.get_freeze_count() > 0
