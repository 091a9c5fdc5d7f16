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

import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

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


# -- what the tenant stage stores of a window's thresholds ---------------------------------------
# A tenant's windows and thresholds only grow (1-1,000 thresholds, a window a month for years),
# so one record of them all outgrew Kafka's record limit. The tenant stage keeps a record per
# window start (`thr/{tenant}/{start}`) of its thresholds' state and last events, and each event
# not yet confirmed sent as a record of its own. A window's record keeps an event without its
# tenant and with its `notify` list by name: a license's list may be long (100 addresses of up
# to 320 characters), each license of a window may have had its own, and a table of them in the
# record outgrew a record after some 30 licenses. Each list is a record of its own
# (`thrn/{tenant}/{name}`), named by a hash of its content: the same list always has the same
# name and the same value, so a record of it is never changed and never needs deleting before
# the last window that names it. `event_record` gives back the exact record that was sent, so a
# takeover's re-send is identical. (A record an earlier version wrote keeps its lists in a
# table, `notify`, and names them by their index in it; it is read as it is and written anew
# the first time its state changes.)


def notify_name(notify: Sequence[str]) -> str:
    """The name a `notify` list is stored under: a hash of its content."""
    return hashlib.blake2b(orjson.dumps(list(notify)), digest_size=16).hexdigest()


def event_record(tenant_id: str, kept: Mapping[str, Any], notify: list[str]) -> dict[str, Any]:
    """The `threshold-events` record of a kept event (fields in the contract's order)."""
    return {
        "event_id": kept["event_id"],
        "tenant_id": tenant_id,
        "window": kept["window"],
        "threshold_pct": kept["threshold_pct"],
        "threshold_learners": kept["threshold_learners"],
        "direction": kept["direction"],
        "active_learners": kept["active_learners"],
        "learner_limit": kept["learner_limit"],
        "notify": list(notify),
        "occurred_at": kept["occurred_at"],
    }


def kept_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """An event as a window's record keeps it: without its tenant, its list by name."""
    kept = {field: value for field, value in event.items() if field not in ("tenant_id", "notify")}
    return {**kept, "notify": notify_name(event["notify"])}


def named_lists(record: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, list]]:
    """A window's stored record as this version keeps it: its thresholds' state with every
    event's list by name, and the lists an earlier version's record held in its table (by
    name: they are to be stored when the record is written anew)."""
    table = record.get("notify")
    if not table:  # (this version's record: as it is, `evaluate` copies what it changes)
        return record["pcts"], {}
    lists: dict[str, list[str]] = {}
    pcts: dict[str, dict[str, Any]] = {}
    for pct, entry in record["pcts"].items():
        event = entry.get("event")
        if event and isinstance(event["notify"], int):
            notify = table[event["notify"]]
            name = notify_name(notify)
            lists[name] = list(notify)
            entry = {**entry, "event": {**event, "notify": name}}
        pcts[pct] = dict(entry)
    return pcts, lists


def names_used(pcts: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The names of the lists a window's last events use, each once, in threshold order."""
    return list(
        dict.fromkeys(
            entry["event"]["notify"]
            for _, entry in sorted(pcts.items(), key=lambda item: int(item[0]))
            if entry.get("event")
        )
    )


def event_notify(
    record: Mapping[str, Any], kept: Mapping[str, Any], stored_list: Callable[[str], list[str]]
) -> list[str]:
    """A kept event's `notify` list: from the stored lists, or an earlier version's table."""
    ref = kept["notify"]
    return record["notify"][ref] if isinstance(ref, int) else stored_list(ref)


def last_events(
    tenant_id: str,
    record: Mapping[str, Any],
    stored_list: Callable[[str], list[str]],
    later: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """The last event of every threshold of a window's record, but of those with a later
    crossing (`later`: pct -> its number) that the record does not hold yet."""
    later = later or {}
    return [
        event_record(tenant_id, entry["event"], event_notify(record, entry["event"], stored_list))
        for pct, entry in record["pcts"].items()
        if entry.get("event") and later.get(pct, 0) <= entry["crossings"]
    ]


def split_legacy(
    state: Mapping[str, Any],
) -> tuple[
    dict[str, dict[str, Any]],
    dict[str, list[str]],
    dict[tuple[str, int], list[tuple[int, dict[str, Any]]]],
]:
    """An older version's one record of a tenant ({"windows": {start: {pct: entry with a whole
    event}}, "pending": [whole events]}) as per-window records, the `notify` lists their events
    name, and the pending events by window and threshold with their crossing numbers (they are
    the last crossings, in order: every crossing was added to the list, and a tick emptied it)."""
    records = {}
    lists: dict[str, list[str]] = {}
    for start, pcts in state.get("windows", {}).items():
        kept = {}
        for pct, entry in pcts.items():
            if entry.get("event"):
                event = entry["event"]
                lists[notify_name(event["notify"])] = list(event["notify"])
                kept[pct] = {**entry, "event": kept_event(event)}
            else:
                kept[pct] = dict(entry)
        records[start] = {"pcts": kept}
    by_threshold: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for event in state.get("pending", []):
        by_threshold.setdefault((event["window"]["start"], event["threshold_pct"]), []).append(
            event
        )
    pending = {}
    for (start, pct), events in by_threshold.items():
        entry = state.get("windows", {}).get(start, {}).get(str(pct), {})
        last = entry.get("crossings", len(events))
        first = last - len(events) + 1
        pending[(start, pct)] = [(first + n, event) for n, event in enumerate(events)]
    return records, lists, pending
