"""Window maths, table-driven: month-end clamping, leap years, DST, negative indexes, boundaries."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from streams.domain.windows import Cut, add_months, local_midnight, window_of, window_starting

# (day, months to add, expected): always from the anchor, clamped to the target month's length
ADD_MONTHS = [
    (date(2026, 1, 31), 1, date(2026, 2, 28)),
    (date(2028, 1, 31), 1, date(2028, 2, 29)),  # leap year
    (date(2026, 1, 31), 2, date(2026, 3, 31)),  # not chained through Feb 28
    (date(2026, 1, 31), 3, date(2026, 4, 30)),
    (date(2024, 2, 29), 12, date(2025, 2, 28)),
    (date(2024, 2, 29), 48, date(2028, 2, 29)),
    (date(2026, 3, 31), -1, date(2026, 2, 28)),
    (date(2026, 1, 15), -13, date(2024, 12, 15)),
    (date(2026, 12, 31), 1, date(2027, 1, 31)),
    (date(1970, 1, 1), 0, date(1970, 1, 1)),
]


@pytest.mark.parametrize(("day", "months", "expected"), ADD_MONTHS)
def test_add_months_clamps_and_never_chains(day: date, months: int, expected: date) -> None:
    assert add_months(day, months) == expected


UTC_MONTHLY_JAN31 = Cut(date(2026, 1, 31), 1, "UTC")
BERLIN_QUARTERLY = Cut(date(2026, 1, 1), 3, "Europe/Berlin")
NEW_YORK_MONTHLY = Cut(date(2026, 3, 8), 1, "America/New_York")
YEARLY_LEAP = Cut(date(2024, 2, 29), 12, "UTC")
DEFAULT = Cut(date(1970, 1, 1), 12, "UTC")


def utc(*parts: int, micro: int = 0) -> datetime:
    return datetime(*parts, tzinfo=UTC) + timedelta(microseconds=micro)


# (cut, instant, expected window start, expected end, expected index)
WINDOW_CASES = [
    # Jan 31 anchor, monthly: Jan 31, Feb 28, Mar 31, Apr 30, ...
    (UTC_MONTHLY_JAN31, utc(2026, 2, 15), date(2026, 1, 31), date(2026, 2, 28), 0),
    (UTC_MONTHLY_JAN31, utc(2026, 2, 28), date(2026, 2, 28), date(2026, 3, 31), 1),
    (
        UTC_MONTHLY_JAN31,
        utc(2026, 3, 30, 23, 59, 59, micro=999_999),
        date(2026, 2, 28),
        date(2026, 3, 31),
        1,
    ),
    (UTC_MONTHLY_JAN31, utc(2026, 3, 31), date(2026, 3, 31), date(2026, 4, 30), 2),
    (UTC_MONTHLY_JAN31, utc(2026, 5, 15), date(2026, 4, 30), date(2026, 5, 31), 3),
    # before the anchor: negative indexes
    (
        UTC_MONTHLY_JAN31,
        utc(2026, 1, 30, 23, 59, 59, micro=999_999),
        date(2025, 12, 31),
        date(2026, 1, 31),
        -1,
    ),
    (UTC_MONTHLY_JAN31, utc(2025, 11, 30), date(2025, 11, 30), date(2025, 12, 31), -2),
    # leap-day anchor, yearly
    (YEARLY_LEAP, utc(2025, 2, 28), date(2025, 2, 28), date(2026, 2, 28), 1),
    (YEARLY_LEAP, utc(2025, 2, 27, 23, 59, 59), date(2024, 2, 29), date(2025, 2, 28), 0),
    (YEARLY_LEAP, utc(2028, 2, 29), date(2028, 2, 29), date(2029, 2, 28), 4),
    # Berlin midnight is 23:00 UTC in winter, 22:00 UTC in summer
    (
        BERLIN_QUARTERLY,
        utc(2026, 3, 31, 21, 59, 59, micro=999_999),
        date(2026, 1, 1),
        date(2026, 4, 1),
        0,
    ),
    (BERLIN_QUARTERLY, utc(2026, 3, 31, 22), date(2026, 4, 1), date(2026, 7, 1), 1),
    (BERLIN_QUARTERLY, utc(2025, 12, 31, 23), date(2026, 1, 1), date(2026, 4, 1), 0),
    (BERLIN_QUARTERLY, utc(2025, 12, 31, 22, 59), date(2025, 10, 1), date(2026, 1, 1), -1),
    # New York: DST starts 2026-03-08 at 02:00; midnight that day is still EST (05:00 UTC)
    (NEW_YORK_MONTHLY, utc(2026, 3, 8, 5), date(2026, 3, 8), date(2026, 4, 8), 0),
    (NEW_YORK_MONTHLY, utc(2026, 3, 8, 4, 59, 59), date(2026, 2, 8), date(2026, 3, 8), -1),
    # and 2026-04-08 midnight is EDT (04:00 UTC)
    (NEW_YORK_MONTHLY, utc(2026, 4, 8, 4), date(2026, 4, 8), date(2026, 5, 8), 1),
    (NEW_YORK_MONTHLY, utc(2026, 4, 8, 3, 59, 59), date(2026, 3, 8), date(2026, 4, 8), 0),
    # the default license: calendar years in UTC
    (DEFAULT, utc(2026, 11, 28), date(2026, 1, 1), date(2027, 1, 1), 56),
    (DEFAULT, utc(1969, 12, 31, 23, 59, 59), date(1969, 1, 1), date(1970, 1, 1), -1),
]


@pytest.mark.parametrize(("cut", "instant", "start", "end", "index"), WINDOW_CASES)
def test_window_of(cut: Cut, instant: datetime, start: date, end: date, index: int) -> None:
    window = window_of(cut, instant)
    assert (window.start, window.end, window.index) == (start, end, index)
    assert window.contains(instant)
    assert window.months == cut.months


def test_instant_in_another_offset_is_the_same_instant() -> None:
    instant = datetime(2026, 4, 1, 0, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # 22:30 UTC Mar 31
    assert window_of(BERLIN_QUARTERLY, instant).start == date(2026, 4, 1)


def test_dst_gap_at_midnight_starts_the_window_at_the_first_instant_of_the_day() -> None:
    # America/Santiago skipped from 2022-09-11 00:00 to 01:00 local.
    start = local_midnight(date(2022, 9, 11), "America/Santiago")
    assert start == utc(2022, 9, 11, 4)
    cut = Cut(date(2022, 9, 11), 1, "America/Santiago")
    assert window_of(cut, start).start == date(2022, 9, 11)
    assert window_of(cut, start - timedelta(microseconds=1)).start == date(2022, 8, 11)


@pytest.mark.parametrize(
    "cut", [UTC_MONTHLY_JAN31, BERLIN_QUARTERLY, NEW_YORK_MONTHLY, YEARLY_LEAP]
)
def test_consecutive_windows_tile_time_without_gaps(cut: Cut) -> None:
    window = window_of(cut, utc(2020, 1, 1))
    for _ in range(60):
        following = window_of(cut, window.end_at)
        assert following.start_at == window.end_at
        assert following.index == window.index + 1
        assert window_of(cut, window.end_at - timedelta(microseconds=1)) == window
        window = following


def test_window_starting_names_only_real_window_starts() -> None:
    assert window_starting(UTC_MONTHLY_JAN31, date(2026, 2, 28)) is not None
    assert window_starting(UTC_MONTHLY_JAN31, date(2026, 2, 27)) is None


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        window_of(DEFAULT, datetime(2026, 1, 1))  # noqa: DTZ001


def test_cut_refuses_other_window_lengths() -> None:
    with pytest.raises(ValueError, match="1, 3 or 12"):
        Cut(date(2026, 1, 1), 2, "UTC")
