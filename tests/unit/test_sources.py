"""Which of two deliveries of a license or of a learner's groups is the newer one
(streams/domain/sources.py): by offset within a partition, by timestamp across partitions (a
topic that gained partitions splits a key over two)."""

from __future__ import annotations

import pytest

from streams.domain.sources import position_of, superseded

T = 1_764_000_000_000  # ms


@pytest.mark.parametrize(
    ("stored", "incoming", "older"),
    [
        ([0, 10, T], [0, 9, T + 5], True),  # one partition: the offset decides, not the clock
        ([0, 10, T], [0, 11, T - 5], False),
        ([0, 10, T], [0, 10, T], False),  # the same record again: applied again, harmless
        # across partitions (the topic grew): the record's timestamp decides
        ([4, 0, T], [1, 7, T - 1], True),
        ([1, 7, T], [4, 0, T + 1], False),
        ([1, 7, T], [4, 0, T], False),  # a tie: the higher partition wins
        # a position kept by an older version has no timestamp: the later arrival wins
        ([4, 0], [1, 7, T - 1], False),
        ([4, 0, T], [1, 7], False),
        ([0, 10], [0, 9, T], True),
        # a record without a timestamp (-1) orders nothing across partitions
        ([4, 0, T], [1, 7, -1], False),
        ([4, 0, -1], [1, 7, T], False),
        (None, [1, 7, T], False),
        ([1, 7, T], None, False),
    ],
)
def test_superseded(stored, incoming, older) -> None:
    assert superseded(stored, incoming) is older


def test_a_position_carries_the_records_timestamp() -> None:
    assert position_of(3, 42, T) == [3, 42, T]
