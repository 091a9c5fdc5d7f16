"""A learner's record of windows (one entry per window it launched in) fits one Kafka record for
every launch the service accepts.

The accepted years were 1900 to 9000, and `launched_at` is bounded above only by the record's
Kafka timestamp, which a producer sets: with clocks (or a unit) wrong by centuries, one learner
could collect 23,400 monthly windows, its record passed 1,000,000 bytes, and from then on every
`learner-commands` record carrying one of its launches was given up whole, the launches of other
learners in it with them. The years of timestamps end at 2500 now: at most 7,201 monthly
windows (a license's `cycle_start` keeps 9000: it anchors windows, it adds none).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import orjson

from schemas import topics
from schemas.common import EARLIEST_YEAR, LATEST_YEAR
from streams.domain.windows import Cut, window_at_index, window_of
from streams.http.read_model import ReadModel
from streams.notifier.licenses import WebhookBook
from streams.stages.store import MAX_RECORD_BYTES
from tests.stages.pipeline import Pipeline, launch, license_


def test_a_membership_of_every_monthly_window_of_the_accepted_years_fits_twice_over() -> None:
    # the most windows (monthly, anchored on the 31st, a zone far from UTC) and the longest
    # numbers (a microsecond in each: 18 characters)
    cut = Cut(date(EARLIEST_YEAR, 1, 31), 1, "Pacific/Kiritimati")
    first = window_of(cut, datetime(EARLIEST_YEAR, 1, 1, tzinfo=UTC)).index
    last = window_of(cut, datetime(LATEST_YEAR - 1, 12, 31, 23, 59, 59, tzinfo=UTC)).index
    membership = {}
    for index in range(first, last + 1):
        window = window_at_index(cut, index)
        instant = window.start_at.timestamp() + 0.123457
        membership[window.start.isoformat()] = [instant, instant]
    assert len(membership) >= (LATEST_YEAR - EARLIEST_YEAR) * 12
    assert len(orjson.dumps(membership)) < MAX_RECORD_BYTES // 2


def test_launches_of_far_future_producer_clocks_count_up_to_the_last_accepted_year() -> None:
    p = Pipeline(partitions=1)
    p.world.clock_ms = int(datetime(2600, 1, 1, tzinfo=UTC).timestamp() * 1000)  # Kafka timestamps
    p.produce(topics.LICENSES, license_("acme", cycle_start="2026-01-01", window_months=1))
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2499-12-10T10:00:00Z"))
    p.produce(topics.LAUNCHES, launch("acme", "l2", "a1", "2500-01-10T10:00:00Z"))
    p.produce(topics.LAUNCHES, launch("acme", "l3", "a1", "2500-01-10T10:00:00Z"))
    p.settle()
    assert p.world.gave_up == []
    letters = p.dead_letters()
    assert [(d["reason"], d["source"]["offset"]) for d in letters] == [
        ("invalid", 1),
        ("invalid", 2),
    ]
    assert all("between the years 1900 and 2500" in d["detail"] for d in letters)
    assert p.active("acme", "2499-12-01") == 1
    assert p.check() == []


def test_a_learner_launching_in_every_month_of_the_accepted_years_is_counted_in_each() -> None:
    p = Pipeline(partitions=2)
    p.world.clock_ms = int(datetime(2600, 1, 1, tzinfo=UTC).timestamp() * 1000)
    p.produce(topics.LICENSES, license_("acme", cycle_start="1900-01-01", window_months=1))
    months = (LATEST_YEAR - EARLIEST_YEAR) * 12
    for month in range(months):
        at = f"{EARLIEST_YEAR + month // 12}-{month % 12 + 1:02d}-10T10:00:00Z"
        p.produce(topics.LAUNCHES, launch("acme", "everywhen", f"a{month}", at))
        if month % 12 == 0:  # another learner's launch in the commands it shares, each January
            p.produce(topics.LAUNCHES, launch("acme", f"l{month}", "a", at))
    p.settle()
    assert p.world.gave_up == [] and p.dead_letters() == []
    for start in (f"{EARLIEST_YEAR}-01-01", "2026-01-01", f"{LATEST_YEAR - 1}-01-01"):
        assert p.active("acme", start) == 2
    assert p.active("acme", f"{LATEST_YEAR - 1}-12-01") == 1
    assert p.check() == []


def test_a_cycle_start_after_the_last_year_of_launches_anchors_windows_as_before() -> None:
    # Dates keep the years to 9000 (helper-54, helper-55: refused now, a license an older version
    # stored failed the tenant stage's takeovers, and the read model and the notifier, which
    # read `licenses` again, showed the tenant unlicensed and lost its webhooks); how many
    # windows a learner has depends on when it launched, not on where the windows are anchored
    p = Pipeline(partitions=1)
    lic = license_("acme", cycle_start="2600-01-15", window_months=1, learner_limit=5)
    p.produce(topics.LICENSES, dict(lic, webhooks=["https://hooks.example.com/acme"]))
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-02-20T10:00:00Z"))
    p.produce(topics.LAUNCHES, launch("acme", "l2", "a1", "2026-03-16T10:00:00Z"))
    p.restart()
    p.produce(topics.LAUNCHES, launch("acme", "l3", "a1", "2026-03-17T10:00:00Z"))
    p.advance(120)
    p.settle()
    assert p.world.gave_up == [] and p.dead_letters() == []
    assert p.active("acme", "2026-02-15") == 1
    assert p.active("acme", "2026-03-15") == 2
    assert p.check() == []
    record = p.counts()[("acme", "2026-03-15")]
    assert record["licensed"] and record["learner_limit"] == 5
    model, book = ReadModel(), WebhookBook()  # both read `licenses` again from its start
    for r in p.records(topics.LICENSES):
        model.apply_license(r.key, r.value)
        book.apply(r.key, r.value)
    assert book.urls("acme") == ("https://hooks.example.com/acme",)
    shown = model.license_of("acme")
    assert shown is not None and shown["cycle_start"] == "2600-01-15"
