"""The report tallies: kept up to date launch by launch, they answer as a scan would."""

from __future__ import annotations

import math
import random
from array import array
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from streams.domain import reports
from streams.domain.learners import (
    LearnerReads,
    TrackedAttempt,
    apply_attempts,
    tally_member,
    window_span,
)
from streams.domain.licenses import cut_of
from streams.domain.tallies import (
    DayOf,
    MonthOf,
    Tallies,
    TallyChange,
    WindowTally,
    advisor_counts,
    daily_firsts,
    month_of_record,
    months_in,
    read_membership,
    stored_membership,
)
from streams.domain.windows import add_months, local_midnight, window_of
from tests.unit.traced import traced

# zones with offsets of half and three quarter hours, and a DST shift of half an hour
ZONES = [
    "UTC",
    "Europe/Berlin",
    "Asia/Kolkata",
    "America/St_Johns",
    "Pacific/Chatham",
    "Australia/Lord_Howe",
    "America/Los_Angeles",
]


@pytest.mark.parametrize("zone", ZONES)
def test_the_month_of_an_instant_is_its_local_calendar_month(zone: str) -> None:
    rng = random.Random(zone)
    month_of = MonthOf(zone)
    start = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    for _ in range(5_000):
        instant = start + rng.uniform(0, 3 * 365 * 86_400)
        local = datetime.fromtimestamp(instant, ZoneInfo(zone))
        assert month_of(instant) == f"{local.year:04d}-{local.month:02d}"
    # the instant of a local month start, and the microsecond before it
    bound = local_midnight(date(2026, 3, 1), zone).timestamp()
    assert month_of(bound) == "2026-03" and month_of(bound - 1e-6) == "2026-02"
    assert month_of.is_month_start(bound) and not month_of.is_month_start(bound + 900)


ODD_INSTANTS = [math.nan, math.inf, -math.inf, -1e12, 1e13]


@pytest.mark.parametrize("zone", ZONES)
def test_months_counted_at_once_are_the_months_of_each_instant(zone: str) -> None:
    """A deletion counts the months of its removed attempts at once (`MonthOf.count`): the
    same counts as asking the month of each, with instants on and next to month starts, far
    apart (the run of months widened and started again), repeated, and ones no month holds
    in order (NaN, infinities, past the calendar's ends)."""
    rng = random.Random(zone)
    bounds = [
        local_midnight(date(year, month, 1), zone).timestamp()
        for year in (1900, 2025, 2026, 2027, 2400)
        for month in (1, 2, 3, 10, 11, 12)
    ]
    for _ in range(200):
        instants = [
            rng.choice(
                [
                    rng.choice(bounds),
                    rng.choice(bounds) - 1e-6,
                    rng.choice(bounds) + rng.uniform(-86_400 * 40, 86_400 * 40),
                ]
            )
            for _ in range(rng.randrange(0, 60))
        ]
        instants += instants[: rng.randrange(0, 5)]
        if rng.random() < 0.2:  # what the bisection cannot place is asked on its own
            instants.insert(rng.randrange(len(instants) + 1), rng.choice(ODD_INSTANTS))
        fresh = MonthOf(zone)  # (the one that asks each instant: its own run of months)
        expected = Counter(map(fresh, instants))
        assert MonthOf(zone).count(instants) == expected, instants
        assert months_in(zone).count(instants) == expected, instants  # a run already used


@pytest.mark.parametrize("zone", ZONES)
def test_the_month_of_a_stored_record_is_read_from_its_text_where_that_is_safe(zone: str) -> None:
    rng = random.Random(zone)
    month_of = MonthOf(zone)
    for _ in range(5_000):
        instant = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.uniform(0, 8e7))
        minutes = rng.choice([0, 0, rng.randrange(-23 * 60 - 59, 23 * 60 + 60)])
        offset = timezone(timedelta(minutes=minutes))
        text = instant.astimezone(offset).isoformat()
        record = orjson.dumps({"tenant_id": "t", "launched_at": text, "logically_deleted": False})
        assert month_of_record(record, month_of) == month_of(instant.timestamp()), text


def test_stored_forms_of_older_versions_read_as_windows_without_summaries() -> None:
    assert read_membership(["2026-01-01"]) == {"2026-01-01": None}
    assert read_membership({"2026-01-01": 2, "2026-02-01": 0}) == {"2026-01-01": None}
    assert read_membership({"2026-01-01": [1.5, 2]}) == {"2026-01-01": [1.5, 2.0]}
    assert read_membership(None) == {}
    assert stored_membership({"b": [1.0, 2.0], "a": None}) == {"a": None, "b": [1.0, 2.0]}


def test_an_unknown_summary_makes_its_window_tally_untrusted() -> None:
    tallies = Tallies()
    license_ = {"cycle_start": "2026-01-01", "window_months": 12, "timezone": "UTC"}
    tally_member(tallies, {"2026-01-01": None}, cut_of({"license": license_}))
    assert tallies.windows["2026-01-01"].exact is False
    span = (tallies.windows["2026-01-01"].start, tallies.windows["2026-01-01"].end)
    assert tallies.tallied(span) is None


def test_a_window_ending_before_the_takeover_is_not_tallied() -> None:
    tallies = Tallies(tracked_from=1_000.0)
    change = TallyChange()
    change.replace("old", (0.0, 1_000.0), None, [10.0, 20.0], "UTC")
    tallies.apply(change)
    assert tallies.windows == {}
    assert tallies.tallied((0.0, 1_000.0)) is None  # a scan answers
    assert tallies.tallied((500.0, 2_000.0)) == WindowTally(500.0, 2_000.0)  # no member yet


@pytest.mark.parametrize("zone", ZONES)
def test_the_day_of_an_instant_is_its_local_date(zone: str) -> None:
    rng = random.Random(zone)
    day_of = DayOf(zone)
    for _ in range(5_000):
        instant = rng.uniform(0, 3 * 365 * 86_400) + datetime(2024, 1, 1, tzinfo=UTC).timestamp()
        assert day_of(instant) == datetime.fromtimestamp(instant, ZoneInfo(zone)).toordinal()
    midnight = local_midnight(date(2026, 3, 29), zone).timestamp()  # a DST day in Europe
    assert day_of(midnight) == date(2026, 3, 29).toordinal()
    assert day_of(midnight - 1e-6) == date(2026, 3, 28).toordinal()


def test_a_cutoff_that_is_not_a_local_month_start_is_left_to_a_scan() -> None:
    tally = WindowTally(0.0, 86_400.0)
    assert advisor_counts(tally, Counter(), "UTC", [60.0]) is None
    assert advisor_counts(tally, Counter({"1969-12": 2}), "UTC", [0.0]) == ([0], [2])


class Partition:
    """One learner partition as plain dicts, its tallies kept as the stage keeps them."""

    def __init__(self, license_: dict[str, Any]) -> None:
        self.license = license_
        self.attempts: dict[tuple, Any] = {}
        self.memberships: dict[tuple, Any] = {}
        self.tallies = Tallies()

    def apply(self, items: list[TrackedAttempt]) -> None:
        reads = LearnerReads(
            attempts={i.attempt: self.attempts.get(i.attempt) for i in items},
            memberships={i.learner: self.memberships.get(i.learner) for i in items},
            tenants={"acme": self.license},
        )
        result = apply_attempts(items, reads, cut_of)
        self.attempts.update(result.attempts)
        self.memberships.update(result.memberships)
        for change in result.changes.values():
            self.tallies.apply(change.tallies)

    def learners(self) -> list[reports.LearnerAttempts]:
        by_learner: dict[str, list[float]] = {}
        for (_, learner, _), record in sorted(self.attempts.items()):
            at = datetime.fromisoformat(record["launched_at"]).timestamp()
            by_learner.setdefault(learner, []).append(at)
        return sorted(by_learner.items())


@pytest.mark.parametrize("seed", range(24))
def test_tallies_kept_launch_by_launch_answer_as_a_scan(seed: int) -> None:
    rng = random.Random(seed)
    zone = ZONES[seed % len(ZONES)]
    license_ = {
        "license": {
            "cycle_start": "2025-07-15",
            "window_months": rng.choice([1, 3, 12]),
            "timezone": zone,
        }
    }
    cut = cut_of(license_)
    partition = Partition(license_)
    begin = datetime(2025, 5, 1, tzinfo=UTC)
    launches = []
    for n in range(400):
        learner = f"l{rng.randrange(40)}"
        at = begin + timedelta(seconds=rng.uniform(0, 480 * 86_400))
        if rng.random() < 0.1:  # on a local month start exactly, or just before it
            at = local_midnight(add_months(cut.anchor, rng.randrange(-2, 14)).replace(day=1), zone)
            at -= timedelta(microseconds=rng.choice([0, 1]))
        attempt = f"a{rng.randrange(1_000)}" if rng.random() < 0.9 else "a0"
        launches.append(TrackedAttempt("acme", learner, "e", attempt, at.isoformat(), 0, n))
    launches += rng.sample(launches, 40)  # redeliveries, out of order
    while launches:  # batches of any size, each in arrival order
        size = rng.randint(1, 50)
        partition.apply(launches[:size])
        launches = launches[size:]

    learners = partition.learners()
    instants = sorted(at for _, ats in learners for at in ats)
    for probe in rng.sample(instants, 5):
        window = window_of(cut, datetime.fromtimestamp(probe, UTC))
        span = reports.Span(*window_span(window))
        tally = partition.tallies.tallied((span.start, span.end))
        assert tally is not None
        days = reports.LocalDays(span, zone)
        assert daily_firsts(tally, days.days) == days.firsts(learners)
        starts = reports.month_starts(add_months(window.start, -12), window.end)
        cutoffs = [local_midnight(day, zone).timestamp() for day in starts]
        assert advisor_counts(
            tally, partition.tallies.months, zone, cutoffs
        ) == reports.advisor_tally(learners, span, cutoffs)

    # a takeover rebuilds the same tallies from the stored memberships and attempts
    rebuilt = Tallies()
    for membership in partition.memberships.values():
        tally_member(rebuilt, read_membership(membership), cut)
    month_of = MonthOf(zone)
    for _, ats in learners:
        for at in ats:
            rebuilt.months[month_of(at)] += 1
    assert _view(rebuilt) == _view(partition.tallies)


def _view(tallies: Tallies) -> tuple[dict[str, Any], dict[str, int]]:
    windows = {
        name: (t.firsts_by_day(), dict(t.lasts), t.exact)
        for name, t in tallies.windows.items()
        if t.firsts_by_day() or t.lasts
    }
    return windows, {m: n for m, n in tallies.months.items() if n}


def test_a_long_window_with_few_first_days_is_a_dict_until_an_array_is_smaller() -> None:
    # a year in UTC: 365 days, the array from 23 days with learners on (365 // 16 = 22)
    start = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    end = datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    first_day = date(2026, 1, 1).toordinal()
    tallies = Tallies(tracked_from=start)
    change = TallyChange()
    for n in range(22):  # learner n's first attempt on day 10n of the year
        at = start + n * 10 * 86_400 + 3_600
        change.replace("2026-01-01", (start, end), None, [at, at], "UTC")
    tallies.apply(change)
    tally = tallies.windows["2026-01-01"]
    assert isinstance(tally.firsts, dict)
    expected = {first_day + 10 * n: 1 for n in range(22)}
    assert tally.firsts_by_day() == expected

    change = TallyChange()  # one more day, and a learner whose first moves to an earlier day
    later = start + 300 * 86_400 + 5
    change.replace("2026-01-01", (start, end), None, [later, later], "UTC")
    moved, to = start + 210 * 86_400 + 3_600, start + 205 * 86_400
    change.replace("2026-01-01", (start, end), [moved, moved], [to, moved], "UTC")
    tallies.apply(change)
    assert isinstance(tally.firsts, array) and len(tally.firsts) == 365
    expected |= {first_day + 300: 1, first_day + 205: 1}
    del expected[first_day + 210]
    assert tally.firsts_by_day() == expected
    days = [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]
    assert daily_firsts(tally, days) == [expected.get(day.toordinal(), 0) for day in days]


def test_a_tally_of_a_year_with_two_learners_takes_a_few_hundred_bytes() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    end = datetime(2027, 1, 1, tzinfo=UTC).timestamp()

    def tallied() -> list[Tallies]:
        kept = []
        for _ in range(1_000):
            tallies, change = Tallies(tracked_from=start), TallyChange()
            for day in (3, 200):
                at = start + day * 86_400
                change.replace("2026-01-01", (start, end), None, [at, at + 60], "UTC")
            tallies.apply(change)
            kept.append(tallies)
        return kept

    kept, held = traced(tallied)
    assert sum(sum(t.windows["2026-01-01"].firsts_by_day().values()) for t in kept) == 2_000
    # a year's array alone is 1,524 bytes
    assert held / 1_000 < 1_600, f"{held / 1_000:,.0f} bytes a tenant"  # (2,345 with the array)
