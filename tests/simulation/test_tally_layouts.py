"""The report tallies' layouts in the simulator (streams/tools/simulate/runner.py,
`_tally_layout`): a long window's first days kept in a dict, then in an array once enough days
have one. With the service's bars no schedule reached the switch; three seeds of four lower them,
so that the checks (every owner's tallies equal a rebuild and answer as a scan of the attempts)
see both forms and the switch between them."""

from __future__ import annotations

from array import array

import pytest

from streams.domain import tallies
from streams.domain.tallies import WindowTally
from streams.tools.simulate.runner import _patched, _tally_layout, generate, run

# seeds whose runs switch a window's first days from the dict to the array (found by a scan of
# seeds 0-119 with the layouts of 2026-12-04)
SWITCHING = (12, 22, 32, 49, 60, 64)


def switches_of(seeds: tuple[int, ...], monkeypatch: pytest.MonkeyPatch) -> tuple[int, bool]:
    """The switches the runs of `seeds` made, and whether every run ended exact."""
    switched = 0
    real = WindowTally.add_sparse

    def add_sparse(self: WindowTally, day: int, sign: int) -> None:
        nonlocal switched
        sparse = isinstance(self.firsts, dict)
        real(self, day, sign)
        switched += sparse and isinstance(self.firsts, array)

    monkeypatch.setattr(WindowTally, "add_sparse", add_sparse)
    clean = all(run(generate(seed)).ok for seed in seeds)
    return switched, clean


def test_the_draw_lowers_the_bars_in_most_seeds_and_puts_them_back() -> None:
    service = tallies.SPARSE_FROM_DAYS, tallies.DENSE_SHARE
    layouts = []
    for seed in range(40):
        with _patched(_tally_layout(seed)):
            layouts.append((tallies.SPARSE_FROM_DAYS, tallies.DENSE_SHARE))
        assert service == (tallies.SPARSE_FROM_DAYS, tallies.DENSE_SHARE)
    assert service in layouts
    assert len(set(layouts)) == 4
    assert sum(layout != service for layout in layouts) >= 20


def test_runs_switch_long_windows_to_arrays_and_end_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    switched, clean = switches_of(SWITCHING, monkeypatch)
    assert switched >= len(SWITCHING)
    assert clean


def test_the_checks_see_a_switch_that_loses_a_day(monkeypatch: pytest.MonkeyPatch) -> None:
    """The switch put back wrong (the array without the dict's latest day) is caught."""

    def lossy(self: WindowTally, day: int, sign: int) -> None:
        firsts = self.firsts
        assert isinstance(firsts, dict)
        firsts[day] = firsts.get(day, 0) + sign
        if len(firsts) * tallies.DENSE_SHARE > self.days:
            dense = array("i", bytes(4 * self.days))
            for known, learners in firsts.items():
                if known != day:
                    dense[known - self.first_day] = learners
            self.firsts = dense

    monkeypatch.setattr(WindowTally, "add_sparse", lossy)
    caught = [seed for seed in SWITCHING if not run(generate(seed)).ok]
    assert caught, "no switching seed noticed a day lost in the switch"
