"""Which of two deliveries of a compacted input is the newer one.

Licenses (key: tenant) and learner groups (key: tenant/learner) are "last record wins". The
stages receive them as commands, and a command may arrive after a newer one: a deposed
worker's send that lands late, a replay. So each carries the position of its input record, and
an older position never replaces a newer one. Positions compare only within one partition (a
key always lands in one); across partitions the later arrival wins.
"""

from __future__ import annotations

from collections.abc import Sequence


def superseded(stored: Sequence[int] | None, incoming: Sequence[int] | None) -> bool:
    """Whether `incoming` ([partition, offset]) is older than what was applied (`stored`)."""
    if not stored or not incoming:
        return False
    return int(stored[0]) == int(incoming[0]) and int(incoming[1]) < int(stored[1])
