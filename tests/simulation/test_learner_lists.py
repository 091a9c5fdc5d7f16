"""The administrators' learner lists in the simulator (streams/tools/simulate/runner.py,
`check_listings`): every run ends with each tenant's window list and learner list read from the
owners' tables, as the reports read them, and compared with a recount of the model's attempts.

The lists come out in learner-id order, which differs from the order of the keys they are read
in where one id continues another with a character below '/' ("l0.1/" sorts before "l0/"). The
plain schedules' ids never do; `SIMULATE_PREFIX_IDS=1` renames a tenant's learners after its
first one ("l0", "l0.1", "l0.1.x", "l0-2") and lowers the bound past which the order asks
whether a prefix id exists. Each mutation below is a wrong order the recount sees."""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from streams.domain import reports
from streams.tools.simulate import runner
from streams.tools.simulate.runner import _order_bounds, explain, generate, run
from streams.tools.simulate.workload import Workload

SEEDS = 150  # with prefix ids: 2,000 ran clean when the mode was added


def failing(seeds: Iterable[int]) -> list[int]:
    return [seed for seed in seeds if not run(generate(seed)).ok]


@pytest.fixture
def prefix_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "PREFIX_IDS", True)


def test_prefix_ids_rename_learners_and_keep_the_schedule() -> None:
    plain = Workload(random.Random(5), 3, 2)
    renamed = Workload(random.Random(5), 3, 2)
    renamed.prefix_learners(random.Random("prefix-ids/5"))
    assert renamed.tenants == plain.tenants
    assert [len(v) for v in renamed.learners.values()] == [len(v) for v in plain.learners.values()]
    pairs = 0
    for seed in range(200):
        workload = Workload(random.Random(seed), 3, 2)
        workload.prefix_learners(random.Random(f"prefix-ids/{seed}"))
        for learners in workload.learners.values():
            assert len(set(learners)) == len(learners)
            pairs += sum(
                1
                for a in learners
                for b in learners
                if a != b and b.startswith(a) and b[len(a)] < "/"
            )
    assert pairs >= 200, "prefix ids that sort apart from their keys"


def test_the_order_bounds_are_drawn_low_and_come_back() -> None:
    held, known = reports.HELD_BEFORE_ASKING, reports.KNOWN_PREFIXES_MAX
    drawn = [dict((name, value) for _, name, value in _order_bounds(seed)) for seed in range(60)]
    assert sum(d["HELD_BEFORE_ASKING"] <= 2 for d in drawn) >= 30
    assert any(d["KNOWN_PREFIXES_MAX"] == 1 for d in drawn)
    low = next(seed for seed, d in enumerate(drawn) if d["HELD_BEFORE_ASKING"] == 0)
    with runner._patched(_order_bounds(low)):
        assert reports.HELD_BEFORE_ASKING == 0
    assert (held, known) == (reports.HELD_BEFORE_ASKING, reports.KNOWN_PREFIXES_MAX)


def test_seeds_with_prefix_ids_end_exact(prefix_ids: None) -> None:
    failures = [explain(r, shrink_s=20) for r in map(run, map(generate, range(SEEDS))) if not r.ok]
    assert not failures, "\n\n".join(failures)


class KeyOrder:
    """A LearnerOrder that passes rows on in key order."""

    def __init__(self, exists: Any = None) -> None:
        pass

    def push(self, learner: str, row: Any) -> list[tuple[str, Any]]:
        return [(learner, row)]

    def finish(self) -> list[tuple[str, Any]]:
        return []


def test_the_checks_see_lists_in_key_order(
    prefix_ids: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeds = (5, 9, 10)
    assert not failing(seeds)
    monkeypatch.setattr(reports, "LearnerOrder", KeyOrder)
    assert failing(seeds) == list(seeds)


def test_the_checks_see_an_order_told_no_prefix_exists(
    prefix_ids: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A look-up that misses existing learners lets a held row out before its prefix id."""
    seeds = (5, 13, 19)
    real = reports.LearnerOrder.__init__

    def never(self: reports.LearnerOrder, exists: Any = None) -> None:
        real(self, (lambda prefix: False) if exists else None)

    monkeypatch.setattr(reports.LearnerOrder, "__init__", never)
    assert failing(seeds) == list(seeds)


def test_the_checks_see_an_order_that_knows_only_some_separators(
    prefix_ids: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only '.' taken as sorting below '/': "l0-2" and "l0 3" come out before "l0"."""
    seeds = (10, 19, 20)

    def dots_only(learner_id: str) -> Iterator[str]:
        for index in range(1, len(learner_id)):
            if learner_id[index] == ".":
                yield learner_id[:index]

    monkeypatch.setattr(reports, "_sensitive_prefixes", dots_only)
    assert failing(seeds) == list(seeds)


def test_the_checks_see_a_wrong_list_in_plain_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without prefix ids too: a learner taken as active by its first attempt alone."""
    seeds = (5, 8, 9)
    assert not failing(seeds)

    def first_only(learners: Any, current: reports.Span) -> Iterator[tuple[str, bool, float]]:
        for learner, instants in learners:
            yield learner, current.holds(instants[0]), max(instants)

    monkeypatch.setattr(reports, "learner_rows", first_only)
    assert failing(seeds) == list(seeds)


def test_the_checks_see_the_http_merge_in_key_order(
    prefix_ids: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The partitions' lists go through the HTTP side's merge (`merge_ordered`); one that
    compares keys (`l0/` after `l0.1/`) puts a prefix id's learner after its continuation."""
    seeds = (9, 12, 17)
    assert not failing(seeds)

    async def key_order(streams: Any, out_chunk: int) -> Any:
        parts = [
            [row for chunk in [c async for c in stream] for row in chunk] for stream in streams
        ]
        rows = list(heapq.merge(*parts, key=lambda row: row[0] + "/"))
        for at in range(0, len(rows), out_chunk):
            yield rows[at : at + out_chunk]

    monkeypatch.setattr(runner, "merge_ordered", key_order)
    assert failing(seeds) == list(seeds)
