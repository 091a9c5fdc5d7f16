"""Run the tests that need no broker at other dates, to find a test (or code) that works today
and breaks on a later day: `make dates`.

Twice a test written with a fixed date passed the day it was written and would have failed a
week or a month later (a window that became a backfill, a cycle whose window moved on). The
clock is moved with libfaketime (Debian's `faketime` package): it starts at each date below and
runs on from there. The dates are taken from today, so they stay ahead: the end of this month and
of the next, the next February's end and the next leap day, the next EU and US daylight-saving
changes (UTC instants just before them), the end of this year, and one and four years on.

    python scripts/dates.py [pytest arguments]   (default: tests/unit tests/stages)

The simulator's runs (tests/simulation) keep a clock of their own (`World.now`), which a
faked wall clock does not move: they run once, in `make test`, not at every date. Two dates run
at a time (DATES_JOBS), each in a process of its own: CI has a time limit.
"""

from __future__ import annotations

import calendar
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

from streams.domain.windows import add_months

# libfaketime breaks signal timers (the process never sees its alarm): this test of a stop that
# hangs past its grace period cannot pass under it, whatever the date
UNDER_FAKETIME_NEVER = (
    "tests/unit/test_logs_and_shutdown.py::test_a_stop_that_hangs_ends_after_the_grace_period"
)
DEFAULT_TESTS = ["tests/unit", "tests/stages"]
JOBS = int(os.environ.get("DATES_JOBS", "2"))


def nth_sunday(year: int, month: int, n: int) -> date:
    """The n-th Sunday of the month (n = -1: the last)."""
    sundays = [
        date(year, month, d)
        for d in range(1, calendar.monthrange(year, month)[1] + 1)
        if date(year, month, d).weekday() == 6
    ]
    return sundays[n if n < 0 else n - 1]


def upcoming(today: date, pick: Callable[[int], date | None]) -> date:
    """The first of pick(this year), pick(next year), ... that is after today."""
    year = today.year
    while (day := pick(year)) is None or day <= today:
        year += 1
    return day


def at(day: date, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def dates(now: datetime) -> list[tuple[str, datetime]]:
    """(why, the instant the clock starts at), all after `now`."""
    today = now.date()
    first = today.replace(day=1)
    this_end, next_end = (add_months(first, n) - timedelta(days=1) for n in (1, 2))
    leap = upcoming(today, lambda y: date(y, 2, 29) if calendar.isleap(y) else None)
    chosen = [
        ("the last seconds of this month", at(this_end, 23, 59, 40)),
        ("the last day of next month", at(next_end, 12, 0)),
        ("February's end", at(upcoming(today, lambda y: date(y, 2, 28)), 23, 59, 40)),
        ("a leap day", at(leap, 12, 0)),
        # Europe moves its clocks at 01:00 UTC on the last Sunday of March
        ("EU summer time starts", at(upcoming(today, lambda y: nth_sunday(y, 3, -1)), 0, 59, 40)),
        # the US at 06:00 UTC (02:00 EDT) on the first Sunday of November
        ("US summer time ends", at(upcoming(today, lambda y: nth_sunday(y, 11, 1)), 5, 59, 40)),
        ("the year's end", at(date(today.year, 12, 31), 23, 30)),
        ("a year on", now + timedelta(days=365)),
        ("four years on", now + timedelta(days=4 * 365 + 1)),
    ]
    return [(why, instant) for why, instant in chosen if instant > now]


def run_at(why: str, instant: datetime, tests: list[str]) -> tuple[str, int, str]:
    """The tests at one date: (its line, pytest's exit status, pytest's output)."""
    stamp = instant.strftime("%Y-%m-%d %H:%M:%S")
    command = [
        "faketime",
        "-f",
        f"@{stamp}",
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--deselect",
        UNDER_FAKETIME_NEVER,
        *tests,
    ]
    # the dates are UTC instants: faketime reads them in the local zone
    done = subprocess.run(
        command,
        env={**os.environ, "TZ": "UTC"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return f"{stamp} UTC ({why})", done.returncode, done.stdout


def main(argv: list[str]) -> int:
    if shutil.which("faketime") is None:
        print(
            "dates: faketime is not installed (Debian: apt-get install faketime)", file=sys.stderr
        )
        return 2
    tests = argv or DEFAULT_TESTS
    failed = []
    with ThreadPoolExecutor(max_workers=max(1, JOBS)) as pool:
        runs = [pool.submit(run_at, why, at, tests) for why, at in dates(datetime.now(UTC))]
        for run in runs:  # (in the dates' order, each whole once it is done)
            line, status, output = run.result()
            print(f"dates: {line}", flush=True)
            print(output, end="", flush=True)
            if status != 0:
                failed.append(line)
    if failed:
        print("dates: failed at " + "; ".join(failed), file=sys.stderr)
        return 1
    print("dates: every date passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
