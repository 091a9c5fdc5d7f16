"""The simulator's outputs checked at rest (`SIMULATE_CHECK_AT_REST=1`) and its leap Februaries
(`SIMULATE_LEAP_YEARS=1`), both opt-in so that the seeds of test_seeds.py keep their runs.

At rest: every run used to be checked only after a rebalance (the one that brings every worker
back, then the final restore), whose takeovers repair what a deposed owner wrote late, so a
wrong record that stays the last of its window "until some later rebalance" passed. The mode
checks at up to three points of a run, the last at its end, with every fault ended and no
rebalance after the last deposed owner's late records (it noticed, or died still deposed): the
workers' own timers (tick, lineage check) must bring every output to the recount.
"""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from typing import Any

import pytest

from schemas import topics
from streams.tools.simulate import runner
from streams.tools.simulate.runner import explain, generate, run
from streams.tools.simulate.world import World

SEEDS = int(os.environ.get("SIMULATION_SEEDS", "300"))


def _clean(results: list[runner.Result]) -> None:
    failures = [explain(r, shrink_s=20) for r in results if not r.ok]
    assert not failures, "\n\n".join(failures)


def test_seeds_checked_at_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run is exact at each of its rest points, and in some of them what a deposed
    owner sent landed after its successors' last takeover (nothing but the timers to answer
    it), both after the owner noticed (a rebalance) and after it died deposed (none)."""
    monkeypatch.setattr(runner, "CHECK_AT_REST", True)
    late: list[int] = []
    drain = runner.drain

    def counted(world: World) -> None:
        rests = sum(1 for line in world.trace if line.startswith("  at rest from"))
        if getattr(world, "rests_seen", 0) < rests:
            world.rests_seen = rests  # type: ignore[attr-defined]
            late.append(len(world.in_flight))  # to land after the rest's last rebalance
        drain(world)

    monkeypatch.setattr(runner, "drain", counted)
    seeds = range(16_860_000, 16_860_000 + max(SEEDS // 3, 100))
    results = [run(generate(seed)) for seed in seeds]
    _clean(results)
    assert len(late) >= 1.5 * len(seeds), "rest points within the runs and one at their end"
    assert sum(1 for n in late if n) >= 10, "deposed owners' records landed at rest"
    fates = set()
    for result in results:
        trace = "\n".join(result.trace)
        for before in trace.split("  at rest from")[:-1]:
            if "still deposed at rest" in before:
                rest = before.split("still deposed at rest", 1)[1]
                fates.add("died" if " died" in rest else "noticed" if "noticed" in rest else "?")
    assert fates == {"died", "noticed"}, fates
    monkeypatch.setattr(runner, "drain", drain)
    assert run(generate(seeds[3])).trace == results[3].trace, "the same seed, the same run"


def test_seeds_checked_at_rest_with_failures_the_worker_survives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A repair that failed with an error the worker survives gets no takeover: at rest the
    next check or write must answer the deposed owner's records (docs/reliability.md, "A
    deposed owner's count record outlived a repair that failed")."""
    monkeypatch.setattr(runner, "CHECK_AT_REST", True)
    monkeypatch.setattr(runner, "SURVIVED_FAILURES", True)
    seeds = range(16_861_000, 16_861_000 + max(SEEDS // 6, 50))
    _clean([run(generate(seed)) for seed in seeds])


def test_the_plain_runs_are_unchanged_by_the_modes() -> None:
    """Off, the modes draw nothing: a seed's schedule has no rest point and starts in 2026."""
    schedule = generate(16_860_003)
    assert not [a for a in schedule.actions if a[0] == "rest"]
    assert schedule.start.year == 2026


def _windows(world: World) -> set[tuple[str, str, int]]:
    out = set()
    for _, record in world.log.all_records(topics.ACTIVE_LEARNER_COUNTS):
        if record.value is not None:
            window = json.loads(record.value)["window"]
            out.add((window["start"], window["end"], window["months"]))
    return out


def test_seeds_with_leap_years(monkeypatch: pytest.MonkeyPatch) -> None:
    """Licenses anchored on Feb 29, Jan 31, the 30th and the 31st, windows of 1, 3 and 12
    months, the clock crossing the end of February 2027 (not leap) and 2028 (leap): every run
    exact, and the clamped windows happen (they start Feb 28 2027 and Feb 29 2028, and hold
    Feb 29 2028 inside them)."""
    monkeypatch.setattr(runner, "LEAP_YEARS", True)
    windows: set[tuple[str, str, int]] = set()
    check = runner._check

    def seen(world: World) -> Any:
        windows.update(_windows(world))
        return check(world)

    monkeypatch.setattr(runner, "_check", seen)
    seeds = range(16_863_000, 16_863_000 + max(SEEDS // 3, 100))
    crossed = set()
    results = []
    for seed in seeds:
        schedule = generate(seed)
        moved = sum(a[1] for a in schedule.actions if a[0] == "clock")
        end = schedule.start + timedelta(milliseconds=moved)
        if schedule.start.month <= 2 and (end.month, end.year) >= (3, schedule.start.year):
            crossed.add(schedule.start.year)
        results.append(run(schedule))
    _clean(results)
    assert crossed == {2027, 2028}, "the clock crosses the end of February of both years"
    starts = {(start, months) for start, _, months in windows}
    for months in (1, 3, 12):
        assert ("2028-02-29", months) in starts, f"a {months}-month window from Feb 29 2028"
        assert ("2027-02-28", months) in starts, f"a {months}-month window from Feb 28 2027"
    leap_day = date(2028, 2, 29)
    assert any(date.fromisoformat(s) < leap_day < date.fromisoformat(e) for s, e, _ in windows), (
        "a window that holds Feb 29 2028"
    )
    assert any(s.endswith(("-30", "-31")) for s, _, _ in windows), "windows from the 30th, 31st"


def test_edge_seeds_with_leap_years(monkeypatch: pytest.MonkeyPatch) -> None:
    """The edges (launches at a window's first instant, licenses anchored on month ends) over
    the leap Februaries, checked at rest too."""
    monkeypatch.setattr(runner, "LEAP_YEARS", True)
    monkeypatch.setattr(runner, "EDGES", True)
    monkeypatch.setattr(runner, "CHECK_AT_REST", True)
    seeds = range(16_862_000, 16_862_000 + max(SEEDS // 6, 50))
    _clean([run(generate(seed)) for seed in seeds])
