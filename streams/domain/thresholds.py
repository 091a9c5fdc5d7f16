"""Threshold crossings of a window's Active Learners against the licensed limit.

Per window and threshold the tenant stage remembers whether the count was at or above the
threshold's learner count, how many crossings it has seen, and the last event it sent. A
crossing up or down is an event with a deterministic id (tenant, window, threshold, direction,
crossing number): a replay after a crash computes the same id, so consumers drop duplicates.

Nothing of this is ever forgotten: a window that a license change removes and a later one brings
back, or a threshold taken out of the license and put back, continues from what it was. So the
last event of every window and threshold agrees with the count, and two distinct crossings never
share an id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from streams.domain.tenants import threshold_learners

EVENT_NAMESPACE = uuid.UUID("0c7b8d52-5a7e-4f37-9a55-1d3c0d0a7a11")

# window start -> {pct (as text): {"above": bool, "crossings": int, "event": {...} | None}}
ThresholdState = dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Crossing:
    event_id: str
    window: str
    pct: int
    learners: int
    direction: str  # "up" | "down"
    active: int


def event_id(tenant_id: str, window: str, pct: int, direction: str, crossing: int) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{tenant_id}/{window}/{pct}/{direction}/{crossing}"))


def evaluate(
    tenant_id: str,
    state: Mapping[str, Mapping[str, Mapping[str, Any]]],
    windows: Mapping[str, int],
    limit: int | None,
    thresholds: Iterable[int],
) -> tuple[ThresholdState, list[Crossing]]:
    """New state and the crossings for the given windows' current active counts.

    A window without state starts below every threshold (unarmed): its first count at or above
    a threshold fires `up`. Without a limit nothing fires and the state is left as it is.
    """
    new_state: ThresholdState = {w: {p: dict(v) for p, v in s.items()} for w, s in state.items()}
    events: list[Crossing] = []
    if limit is None:
        return new_state, events
    for window, active in sorted(windows.items()):
        per_pct = new_state.setdefault(window, {})
        for pct in sorted(set(thresholds)):
            learners = threshold_learners(limit, pct)
            entry = per_pct.setdefault(str(pct), {"above": False, "crossings": 0})
            above = active >= learners
            if above == entry["above"]:
                continue
            entry["crossings"] += 1
            entry["above"] = above
            direction = "up" if above else "down"
            events.append(
                Crossing(
                    event_id(tenant_id, window, pct, direction, entry["crossings"]),
                    window,
                    pct,
                    learners,
                    direction,
                    active,
                )
            )
    return new_state, events
