"""A range of the threshold fuzzer's seeds (tests/stages/threshold_fuzz.py): licenses flapping
several times in one batch of the tenant stage, crashes at sends of threshold state landing a
random prefix of each group, restarts with and without the state folder. Seed 5126 found a
crossing numbered twice (tests/stages/test_threshold_crash_review.py)."""

from __future__ import annotations

import pytest

from tests.stages import threshold_fuzz

CHUNK = 50


@pytest.mark.parametrize("first", range(5_000, 5_300, CHUNK))
def test_threshold_state_stays_exact_over_fuzzed_crashes(first: int) -> None:
    failed = {
        seed: problems
        for seed in range(first, first + CHUNK)
        if (problems := threshold_fuzz.one(seed))
    }
    assert failed == {}


@pytest.mark.parametrize("first", range(9_000, 9_100, CHUNK))
def test_an_older_versions_threshold_record_stays_exact_over_fuzzed_crashes(
    first: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(threshold_fuzz, "LEGACY", [True])
    failed = {
        seed: problems
        for seed in range(first, first + CHUNK)
        if (problems := threshold_fuzz.one(seed))
    }
    assert failed == {}


def test_a_crash_that_lands_the_front_of_a_releasing_flush_holds_nothing_after_it() -> None:
    """Seed 48157 failed the first form of the simulator's check of deletion holds, which read
    them from the tenant-state changelog: a crash landed a flush's pending events (first in
    its changelog order) without the release of the hold, and the replay computed other
    events. The check now reads the holds from the commands (docs/reliability.md)."""
    assert threshold_fuzz.one(48157) == []
