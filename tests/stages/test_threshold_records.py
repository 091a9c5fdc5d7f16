"""The tenant stage's threshold state stays under Kafka's record limit however many windows and
thresholds a tenant has, and however often its counts cross them between two ticks.

Found by a review of the notifier against CONTRACT.md (2026-12-01): the state of every window and
threshold, with each one's whole last event (its `notify` list too) and every event not yet
confirmed sent, was one record per tenant. It grew with every window for good; past 1 MB each
command publishing the tenant was given up, and its counts froze. Now a window's record keeps
its thresholds (events without their tenant, `notify` lists in a table), and each event not yet
confirmed sent is a record of its own (streams/domain/thresholds.py).
"""

from __future__ import annotations

import orjson

from schemas import topics
from streams.domain.thresholds import event_record, notify_name, split_legacy
from streams.stages import keys
from streams.tools.simulate import runner
from tests.stages.pipeline import Pipeline, launch, license_

EVERY_PCT = list(range(1, 1001))
NOTIFY = ["license-admin@acme.example", "it-ops@acme.example", "procurement@acme.example"]


def largest_state_record(p: Pipeline) -> int:
    return max(
        len(key) + len(value)
        for (table, _), rows in p.worker("w0").state.partitions.items()
        if table == keys.TENANT_STATE
        for key, value in rows.rows.items()
    )


def test_a_monthly_tenant_alerted_at_every_percent_is_counted_for_years() -> None:
    p = Pipeline(partitions=1)
    p.produce(
        topics.LICENSES,
        license_(
            "acme",
            cycle_start="2024-01-01",
            window_months=1,
            learner_limit=10,
            thresholds=list(range(1, 101)),
            notify=NOTIFY,
        ),
    )
    starts = [f"{2024 + k // 12}-{k % 12 + 1:02d}-01" for k in range(26)]
    for n, start in enumerate(starts):
        for learner in range(10):
            p.produce(
                topics.LAUNCHES, launch("acme", f"m{n}l{learner}", "a", f"{start[:8]}10T10:00:00Z")
            )
        p.settle()

    assert p.world.gave_up == []
    assert {start: p.active("acme", start) for start in starts} == dict.fromkeys(starts, 10)
    assert len(p.events("acme")) == 26 * 100  # every threshold of every window, up once
    assert largest_state_record(p) < 100_000
    assert p.check() == []


def test_every_permitted_threshold_crossed_back_and_forth_between_two_ticks() -> None:
    """1,000 thresholds, a limit moved six times before a tick: 990 of them crossed each time
    (up to 10 % stay above a limit of 1,000), 5,940 events not yet confirmed sent, each a
    record of its own."""
    p = Pipeline(partitions=1)

    def licensed(limit: int) -> None:
        lic = license_("acme", cycle_start="2024-01-01", learner_limit=limit, thresholds=EVERY_PCT)
        p.produce(topics.LICENSES, {**lic, "notify": NOTIFY})

    licensed(10)
    for learner in range(100):
        p.produce(topics.LAUNCHES, launch("acme", f"l{learner}", "a", "2026-02-10T10:00:00Z"))
    p.settle()
    for limit in (1000, 10) * 3:
        licensed(limit)
        runner.drain(p.world)  # no tick: nothing is confirmed sent

    assert p.world.gave_up == []
    assert p.active("acme", "2026-01-01") == 100
    assert largest_state_record(p) < 1_000_000
    pending = [
        key
        for (table, _), rows in p.worker("w0").state.partitions.items()
        if table == keys.TENANT_STATE
        for key in rows.rows
        if key.startswith(keys.PENDING_THRESHOLD_EVENTS)
    ]
    assert len(pending) == 6 * 990
    p.restart("w0")  # the takeover sends them all again, identical
    p.settle()
    assert p.check() == []


def test_an_older_versions_record_is_split_with_its_events_unchanged() -> None:
    window = {"start": "2026-01-01", "end": "2027-01-01", "months": 12}

    def event(pct: int, direction: str, crossing: int, notify: list[str]) -> dict:
        return {
            "event_id": f"{pct}-{direction}-{crossing}",
            "tenant_id": "acme",
            "window": window,
            "threshold_pct": pct,
            "threshold_learners": pct // 10,
            "direction": direction,
            "active_learners": 9,
            "learner_limit": 10,
            "notify": notify,
            "occurred_at": "2026-02-01T00:00:00+00:00",
        }

    up, down, up_again = (
        event(80, "up", 1, NOTIFY),
        event(80, "down", 2, []),
        event(80, "up", 3, []),
    )
    legacy = {
        "windows": {
            "2026-01-01": {
                "80": {"above": True, "crossings": 3, "event": up_again},
                "90": {"above": False, "crossings": 0},
            }
        },
        "pending": [up, down, up_again],
    }
    records, lists, pending = split_legacy(legacy)

    record = records["2026-01-01"]
    kept = record["pcts"]["80"]["event"]
    assert event_record("acme", kept, lists[kept["notify"]]) == up_again
    assert record["pcts"]["90"] == {"above": False, "crossings": 0}
    assert lists == {notify_name([]): []}  # only the lists its last events use
    assert pending == {("2026-01-01", 80): [(1, up), (2, down), (3, up_again)]}


def test_a_tenant_with_an_older_versions_record_goes_on_from_it() -> None:
    """The record is split on the tenant's next publication; the events it kept are sent again
    by a takeover exactly as they were, and the next crossing is numbered after them."""
    p = Pipeline(partitions=1)
    lic = license_("acme", cycle_start="2026-01-01", learner_limit=2, thresholds=[50, 100])
    p.produce(topics.LICENSES, lic)
    p.produce(topics.LAUNCHES, launch("acme", "l0", "a", "2026-02-10T10:00:00Z"))
    p.settle()
    [first] = p.events("acme")  # 50 %: up
    state = p.worker("w0").state.partition(keys.TENANT_STATE, 0)
    # the state as an older version left it: one record, whole events
    window_key = keys.window_thresholds("acme", "2026-01-01")
    record = orjson.loads(state.rows.pop(window_key))
    legacy = {
        "windows": {
            "2026-01-01": {
                pct: {**entry, "event": first} if entry.get("event") else entry
                for pct, entry in record["pcts"].items()
            }
        },
        "pending": [],
    }
    state.write({keys.thresholds("acme"): orjson.dumps(legacy)})

    p.restart("w0")  # a takeover sends the older record's last events again
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a", "2026-02-11T10:00:00Z"))
    p.settle()

    assert keys.thresholds("acme") not in state.rows
    events = p.events("acme")
    assert [e["event_id"] for e in events].count(first["event_id"]) >= 2
    assert [e for e in events if e["event_id"] == first["event_id"]] == [first] * len(
        [e for e in events if e["event_id"] == first["event_id"]]
    )
    assert [(e["threshold_pct"], e["direction"]) for e in events][-1] == (100, "up")
    assert p.check() == []
