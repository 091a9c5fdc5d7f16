"""A license is bounded to what its threshold state can hold (found by a review, 2026-12-02).

Every threshold event carries the license's `notify` list, and its pending copy is stored
whole. With no bound a valid license (under Kafka's 1 MiB) made those records outgrow a
record: the tenant command that published them was given up, with the counts of every other
tenant it carried, and every later publication of the tenant failed the same way. Now a
license names at most 100 addresses (dead-lettered otherwise, its tenant keeping its earlier
license). A window's threshold record names each last event's list, stored as a record of its
own (tests/stages/test_threshold_lists.py), so no history of licenses makes it outgrow one."""

from __future__ import annotations

import json

from schemas import topics
from schemas.licenses import MAX_NOTIFY
from tests.stages.pipeline import Pipeline, launch, license_


def compact(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def longest_addresses(tag: str, count: int) -> list[str]:
    """`count` different addresses of 318 characters (64 before the @, labels of 63)."""
    domain = ".".join([tag.ljust(63, "x"), "e" * 63, "f" * 63, "g" * 57, "com"])
    return [f"{'a' * 58}{k:06d}@{domain}" for k in range(count)]


def test_a_license_over_the_bounds_is_dead_lettered_and_freezes_nobody() -> None:
    """acme's second license names 23,245 addresses (999,840 bytes, under Kafka's limit): it
    made a pending event of 999,993 bytes, and the tenant command carrying acme's and globex's
    counts was given up (globex stayed at 1 learner, its 100 % `up` never fired)."""
    p = Pipeline(partitions=1)
    p.produce(
        topics.LICENSES, license_("globex", window_months=1, learner_limit=5, thresholds=[100])
    )
    p.produce(topics.LICENSES, license_("acme", window_months=1, learner_limit=1, thresholds=[100]))
    p.produce(topics.LAUNCHES, launch("globex", "g0", "a0", "2026-03-10T10:00:00Z"))
    p.flow()
    p.settle()
    addresses = [f"admin{k:06d}@example-long-domain-name.com" for k in range(23_244)]
    addresses.append("x" * 10 + "@" + "d" * 200 + ".com")
    huge = license_("acme", window_months=1, learner_limit=1, thresholds=[100], notify=addresses)
    assert len(compact(huge)) < 1_000_000
    p.produce(topics.LICENSES, compact(huge), key=b"acme")
    p.produce(topics.LAUNCHES, launch("acme", "l0", "a0", "2026-03-10T10:00:00Z"))
    for n in range(1, 6):
        p.produce(topics.LAUNCHES, launch("globex", f"g{n}", "a0", "2026-03-11T10:00:00Z"))
    p.flow()
    p.settle()
    assert p.world.gave_up == [], p.world.gave_up
    assert p.active("globex", "2026-03-01") == 6
    assert [e["direction"] for e in p.events("globex")] == ["up"]
    refused = [d for d in p.dead_letters() if d["source"]["topic"] == topics.LICENSES]
    assert len(refused) == 1 and refused[0]["reason"] == "invalid", refused
    assert f"at most {MAX_NOTIFY} addresses" in refused[0]["detail"]
    # acme keeps its earlier license: limit 1, no one to mail, its 100 % crossed once
    assert p.active("acme", "2026-03-01") == 1
    assert [(e["threshold_pct"], e["notify"]) for e in p.events("acme")] == [(100, [])]


def test_fifty_licenses_of_the_longest_lists_in_one_window_fit_a_record() -> None:
    """50 thresholds, and before each crossing a new license with 100 other addresses of 318
    characters: every event fires with its license's list, a takeover sends the last ones
    again identical, and no record of the state comes near the limit. (The window's record
    kept the lists in a table of its own until 2026-12-02: some 30 such licenses outgrew it,
    and the tenant's publications were given up from then on.)"""
    p = Pipeline(partitions=1)
    crossings = 50
    pcts = [2 * (n + 1) for n in range(crossings)]  # 2 % .. 100 % of 50: one learner each
    for n in range(crossings):
        notify = longest_addresses(f"t{n:03d}", MAX_NOTIFY)
        acme = license_(
            "acme", window_months=1, learner_limit=crossings, thresholds=pcts, notify=notify
        )
        p.produce(topics.LICENSES, compact(acme), key=b"acme")
        p.produce(topics.LAUNCHES, launch("acme", f"l{n}", "a0", "2026-03-10T10:00:00Z"))
        p.flow()
        p.settle()
    assert p.world.gave_up == [], p.world.gave_up
    assert p.dead_letters() == []
    assert p.active("acme", "2026-03-01") == crossings
    sent = p.events("acme")
    events = list({e["event_id"]: e for e in sent}.values())  # a retried send may repeat one
    assert [e["threshold_pct"] for e in events] == pcts
    assert [e["notify"][0][58:64] for e in events] == ["000000"] * crossings
    assert [e["notify"][0][65:69] for e in events] == [f"t{n:03d}" for n in range(crossings)]
    largest = max(
        len(r.key or b"") + len(r.value or b"") for r in p.records(topics.TENANT_STATE_CHANGELOG)
    )
    assert largest < 100_000, largest

    p.restart("w0")  # the takeover sends the last event of every threshold again, identical
    p.settle()
    again = p.events("acme")[len(sent) :]
    assert sorted(again, key=lambda e: e["threshold_pct"]) == events
    assert p.check() == []
