"""Which of two deliveries of a compacted input is the newer one.

Licenses (key: tenant) and learner groups (key: tenant/learner) are "last record wins". The
stages receive them as commands, and a command may arrive after a newer one: a deposed
worker's send that lands late, a replay. So each carries the position of its input record,
`[partition, offset, timestamp]`, and an older one never replaces a newer one.

Within one partition the offset decides. A key lands in one partition until an operator adds
partitions to the topic: then its later records go to another partition than its earlier ones,
and nothing orders the two partitions but the records' Kafka timestamps (the LMS producer's
clock, or the broker's with `LogAppendTime`). Across partitions, then, an incoming record whose
timestamp is strictly older than the applied one's is superseded, and on a tie the record in the
higher partition wins: an arbitrary rule, but the same in every learner partition and the tenant
stage whatever order each hears the two in ("the later arrival wins" let them keep different
licenses for good). A position kept by an older version without a timestamp orders nothing
across partitions: the later arrival wins. (Found by the simulator's growth of input topics: an
old license left unread in its old partition was applied after the new one, and won for good.)
"""

from __future__ import annotations

from collections.abc import Sequence


def superseded(stored: Sequence[int] | None, incoming: Sequence[int] | None) -> bool:
    """Whether `incoming` ([partition, offset, timestamp ms]) is older than what was applied
    (`stored`); a position without its timestamp (an older version's) compares by offset only."""
    if not stored or not incoming:
        return False
    if int(stored[0]) == int(incoming[0]):
        return int(incoming[1]) < int(stored[1])
    stored_ms, incoming_ms = _timestamp(stored), _timestamp(incoming)
    if stored_ms is None or incoming_ms is None:
        return False
    # a tie goes to the higher partition, seen from either side: every stage keeps one record
    return (incoming_ms, int(incoming[0])) < (stored_ms, int(stored[0]))


def _timestamp(position: Sequence[int]) -> int | None:
    # a record without a timestamp (-1: a message format before Kafka 0.10) orders nothing
    if len(position) < 3 or int(position[2]) < 0:
        return None
    return int(position[2])


def position_of(partition: int, offset: int, timestamp_ms: int) -> list[int]:
    """The position a command carries for its input record."""
    return [partition, offset, timestamp_ms]
