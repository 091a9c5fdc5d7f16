"""A learner's record of windows (one entry per window it launched in) fits one Kafka record for
every launch the service accepts.

The accepted years were 1900 to 9000, and `launched_at` is bounded above only by the record's
Kafka timestamp, which a producer sets: with clocks (or a unit) wrong by centuries, one learner
could collect 23,400 monthly windows, its record passed 1,000,000 bytes, and from then on every
`learner-commands` record carrying one of its launches was given up whole, the launches of other
learners in it with them. The years end at 2500 now: at most 7,201 monthly windows.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import orjson
import pytest

from schemas import common, topics
from schemas.common import EARLIEST_YEAR, LATEST_YEAR
from streams.domain.windows import Cut, window_at_index, window_of
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


def test_a_license_an_older_version_stored_after_the_last_year_keeps_governing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # helper-54: the tenant stage validates the licenses it stored again, and one with a
    # `cycle_start` an older version accepted (up to 9000) failed every takeover and every
    # partial count of its tenant
    p = Pipeline(partitions=1)
    monkeypatch.setattr(common, "LATEST_YEAR", 9000)  # the older version
    p.produce(topics.LICENSES, license_("acme", cycle_start="2600-01-01", window_months=1))
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-03-10T10:00:00Z"))
    p.settle()
    monkeypatch.undo()  # upgraded
    p.produce(topics.LICENSES, license_("globex", cycle_start="2600-01-01", window_months=1))
    p.produce(topics.LAUNCHES, launch("acme", "l2", "a1", "2026-03-11T10:00:00Z"))
    p.restart()
    p.produce(topics.LAUNCHES, launch("acme", "l3", "a1", "2026-03-12T10:00:00Z"))
    p.advance(120)
    p.settle()
    assert p.world.gave_up == []
    [letter] = p.dead_letters()  # the new license with the same date is refused
    assert letter["source"]["topic"] == topics.LICENSES and "2500" in letter["detail"]
    assert p.active("acme", "2026-03-01") == 3
