"""`make dates` (scripts/dates.py): the dates it moves the clock to stay ahead of today and
cover the days date code breaks on (no broker)."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "dates.py"
_spec = importlib.util.spec_from_file_location("dates_tool", SCRIPT)
assert _spec and _spec.loader
dates_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dates_tool)


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 12, 1, 13, 40, tzinfo=UTC),
        datetime(2027, 2, 28, 23, 59, 50, tzinfo=UTC),
        datetime(2027, 12, 31, 23, 45, tzinfo=UTC),
        datetime(2028, 2, 29, 12, tzinfo=UTC),
    ],
)
def test_every_date_is_ahead_and_the_hard_days_are_there(now: datetime) -> None:
    chosen = dict(dates_tool.dates(now))
    assert all(instant > now for instant in chosen.values())
    leap = chosen["a leap day"]
    assert (leap.month, leap.day) == (2, 29)
    eu = chosen["EU summer time starts"]  # the last Sunday of March, before 01:00 UTC
    assert (eu.month, eu.strftime("%a %H:%M"), eu.day >= 25) == (3, "Sun 00:59", True)
    us = chosen["US summer time ends"]  # the first Sunday of November, before 06:00 UTC
    assert (us.month, us.strftime("%a %H:%M"), us.day <= 7) == (11, "Sun 05:59", True)
    next_month_end = chosen["the last day of next month"]
    assert (next_month_end + timedelta(days=1)).day == 1
    assert chosen["a year on"] - now == timedelta(days=365)
    # the last seconds of this month, unless they are past already
    month_end = chosen.get("the last seconds of this month")
    assert month_end is None or (month_end.month, (month_end + timedelta(seconds=20)).day) == (
        now.month,
        1,
    )
