"""The simulator oracle's naive Active Window rule (streams/tools/simulate/naive_windows.py),
written from CONTRACT.md, against the stages' window_of (streams/domain/windows.py): the two
must agree everywhere, or one of them reads the contract wrongly. Seeded, so deterministic."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest

from streams.domain import windows
from streams.domain.windows import Cut
from streams.tools.simulate import naive_windows

# the contract's own example: d = Jan 31, m = 1 gives Jan 31, Feb 28, Mar 31, Apr 30, ...
CONTRACT_STARTS = [
    (date(2026, 1, 31), 1, [date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31)]),
    (date(2028, 1, 31), 1, [date(2028, 1, 31), date(2028, 2, 29), date(2028, 3, 31)]),
    (date(2024, 2, 29), 12, [date(2024, 2, 29), date(2025, 2, 28), date(2026, 2, 28)]),
    (date(2025, 11, 30), 3, [date(2025, 11, 30), date(2026, 2, 28), date(2026, 5, 30)]),
]


@pytest.mark.parametrize(("anchor", "months", "starts"), CONTRACT_STARTS)
def test_naive_starts_are_the_contracts_clamped_never_chained(
    anchor: date, months: int, starts: list[date]
) -> None:
    got = [naive_windows.window_at(anchor, months, "UTC", k).start for k in range(len(starts))]
    assert got == starts
    assert naive_windows.window_at(anchor, months, "UTC", -1).end == anchor


# (zone, day, the first instant of that local day): a midnight the clocks skip starts the day
# at the end of the gap; one that occurs twice, at its first occurrence
MIDNIGHTS = [
    ("America/Havana", date(2025, 3, 9), datetime(2025, 3, 9, 5, tzinfo=UTC)),  # gap 00-01
    ("America/Havana", date(2025, 11, 2), datetime(2025, 11, 2, 4, tzinfo=UTC)),  # twice
    ("America/Santiago", date(2025, 9, 7), datetime(2025, 9, 7, 4, tzinfo=UTC)),  # gap
    ("Asia/Beirut", date(2026, 3, 29), datetime(2026, 3, 28, 22, tzinfo=UTC)),  # gap
    # St. John's fell back at 00:01 to 23:01 of the day before until 2011: midnight twice,
    # the local date going back between them
    ("America/St_Johns", date(1998, 10, 25), datetime(1998, 10, 25, 2, 30, tzinfo=UTC)),
    ("Australia/Lord_Howe", date(2026, 4, 5), datetime(2026, 4, 4, 13, tzinfo=UTC)),
]


@pytest.mark.parametrize(("zone", "day", "first_instant"), MIDNIGHTS)
def test_naive_and_stage_midnights_at_dst_changes(
    zone: str, day: date, first_instant: datetime
) -> None:
    assert naive_windows.local_midnight(day, zone) == first_instant
    assert windows.local_midnight(day, zone) == first_instant


EDGE_ZONES = (
    "UTC",
    "America/Havana",
    "America/Santiago",
    "Asia/Beirut",
    "America/Asuncion",
    "Africa/Cairo",
    "Australia/Lord_Howe",
    "America/St_Johns",
    "Pacific/Chatham",
    "Pacific/Apia",
    "Pacific/Kiritimati",
    "Etc/GMT+12",
    "Asia/Kathmandu",
    "Europe/Berlin",
    "America/New_York",
)


def _transitions(zone: str, year: int) -> list[datetime]:
    """Instants (to the hour) around which the zone's UTC offset changes in `year`."""
    tz = ZoneInfo(zone)
    out = []
    instant = datetime(year, 1, 1, tzinfo=UTC)
    offset = instant.astimezone(tz).utcoffset()
    while instant.year == year:
        following = instant + timedelta(hours=6)
        if following.astimezone(tz).utcoffset() != offset:
            offset = following.astimezone(tz).utcoffset()
            out.append(following)
        instant = following
    return out


def _anchor(draw: random.Random) -> date:
    day = date(2000, 1, 1) + timedelta(days=draw.randrange(0, 36 * 365))
    roll = draw.random()
    if roll < 0.3:  # a month's end: the 28th to the 31st, clamped in shorter months
        return naive_windows.add_months(date(day.year, 1, 31), day.month - 1)
    if roll < 0.4:
        return date(draw.choice((2000, 2004, 2024, 2028, 2032)), 2, 29)  # a leap day
    if roll < 0.5:
        return date(day.year, day.month, draw.choice((29, 30, 28)) if day.month != 2 else 28)
    return day


def test_naive_rule_agrees_with_window_of_over_random_cuts_and_instants() -> None:
    draw = random.Random(16_400_000)
    zones = sorted(available_timezones())
    compared = 0
    for _ in range(1_500):
        zone = draw.choice(EDGE_ZONES) if draw.random() < 0.6 else draw.choice(zones)
        cut = Cut(_anchor(draw), draw.choice((1, 3, 12)), zone)
        anchored = datetime(cut.anchor.year, cut.anchor.month, cut.anchor.day, tzinfo=UTC)
        roll = draw.random()
        if roll < 0.3:  # anywhere within three years of the anchor, before or after
            years = 3 * 365 * 86400
            instant = anchored + timedelta(seconds=draw.randrange(-years, years))
        elif roll < 0.6:  # a microsecond around a window's start
            k = draw.randrange(-30, 30) // cut.months
            start_at = naive_windows.window_at(cut.anchor, cut.months, zone, k).start_at
            instant = start_at + timedelta(microseconds=draw.choice((-1, 0, 1)))
        else:  # around a DST change of the zone (or anywhere in a year it has none)
            year = draw.randrange(cut.anchor.year - 2, cut.anchor.year + 3)
            changes = _transitions(zone, year) or [datetime(year, 7, 1, tzinfo=UTC)]
            near = draw.choice(changes) + timedelta(hours=draw.randrange(-30, 30))
            instant = near + timedelta(microseconds=draw.choice((-1, 0, 1)))
        local = instant.astimezone(ZoneInfo(draw.choice(EDGE_ZONES)))  # any spelling
        stage = windows.window_of(cut, local)
        naive = naive_windows.window_of(cut, local)
        assert (naive.index, naive.start, naive.end, naive.start_at, naive.end_at) == (
            stage.index,
            stage.start,
            stage.end,
            stage.start_at,
            stage.end_at,
        ), (cut, instant)
        assert naive.start_at <= instant < naive.end_at
        for day in (naive.start, naive.start + timedelta(days=1), naive.end):
            shape = windows.window_starting(cut, day)
            mine = naive_windows.window_starting(cut, day)
            assert (mine and (mine.start, mine.end)) == (shape and (shape.start, shape.end))
        compared += 1
    assert compared == 1_500
