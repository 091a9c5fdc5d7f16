"""Licenses and learner groups converge to one record whatever order their commands arrive in
(streams/domain/sources.py): every learner partition and the tenant stage keep only the position
they applied, so `superseded` must order any two positions the same way from either side.

Two records of one key in two partitions (the topic grew) with the same Kafka timestamp (the same
millisecond, or `LogAppendTime` on a busy broker) are such a pair: "the later arrival wins" made
a learner partition that heard them in one order keep the first and another keep the second, so
partitions of one tenant cut its windows under two licenses for good."""

from __future__ import annotations

from itertools import permutations

import pytest

from streams.domain.sources import superseded

T = 1_764_000_000_000  # ms


def applied(arrivals: list[list[int]]) -> list[int]:
    """The position a stage keeps after hearing `arrivals` in this order."""
    kept: list[int] | None = None
    for position in arrivals:
        if not superseded(kept, position):
            kept = position
    assert kept is not None
    return kept


@pytest.mark.parametrize(
    "records",
    [
        # a tie across the partitions a key was split over
        [[1, 7, T], [4, 0, T]],
        [[0, 3, T - 5], [0, 4, T], [3, 0, T], [5, 1, T]],
        # monotonic timestamps within each partition, ties and no ties across them
        [[2, 10, T], [2, 11, T + 1], [6, 0, T + 1], [6, 1, T + 2], [1, 0, T + 2]],
    ],
)
def test_every_arrival_order_keeps_the_same_record(records: list[list[int]]) -> None:
    kept = {tuple(applied(list(order))) for order in permutations(records)}
    assert len(kept) == 1, f"arrival order decides: {sorted(kept)}"


def test_a_tie_is_decided_the_same_way_from_both_sides() -> None:
    first, second = [1, 7, T], [4, 0, T]
    assert superseded(first, second) != superseded(second, first)
