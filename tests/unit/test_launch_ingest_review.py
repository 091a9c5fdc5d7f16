"""What helper-81's attack on the launch path found (2026-12-05), each pinned here:

1. A leap second (second 60) was read with `datetime.fromisoformat`, which takes offset minutes
   60-99 (`+00:60` as +01:00): the model accepted offsets it refuses on every other second.
2. The fast decoder's search for a number pydantic refuses (4,301 digits) rescanned a run of
   digits from each of its digits: 4,300-digit runs held the launch reader's event loop for
   about 2 s a megabyte, against a 15 s session timeout.
3. Instants are read to the microsecond, further digits cut (schemas/common.py): the `future`
   rule, windows and cut-offs all compare that instant. README, "Counting rules".
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from schemas.launches import Launch
from streams.domain.decoding import Rejected, decode
from streams.domain.launch_decoder import _LONG_DIGITS, MAX_INT_DIGITS, fast_launch
from streams.stages.ingest import route_launches

RECORD_MS = 1_772_359_200_000  # 2026-03-01T10:00:00Z
LEAP_RECORD_MS = 1_483_225_200_000  # 2016-12-31T23:00:00Z


@dataclass
class _Record:
    value: bytes
    timestamp: int
    key: bytes | None = None
    topic: str = "launches"
    partition: int = 0
    offset: int = 0


def _launch(launched_at: str, extra: bytes = b"") -> bytes:
    return (
        b'{"event_id":"e-1","tenant_id":"acme","learner_id":"l-1","element_id":"el-1",'
        b'"attempt_id":"at-1","launched_at":"' + launched_at.encode() + b'"' + extra + b"}"
    )


def _outcome(raw: bytes, timestamp: int = RECORD_MS) -> tuple[str, str | None]:
    routed = route_launches([_Record(raw, timestamp)], 4)
    if routed.dead_letters:
        return "dead_lettered", routed.dead_letters[0].rejected.reason
    return next(iter(routed.outcomes)), None


@pytest.mark.parametrize(
    "text", ["2017-01-01T00:59:60+00:60", "2017-01-01T06:34:60+05:95", "2017-01-01T00:59:60+0060"]
)
def test_a_leap_second_with_offset_minutes_past_59_is_invalid(text: str) -> None:
    assert isinstance(decode(Launch, _launch("2026-03-01T10:00:00+00:60")), Rejected)
    rejected = decode(Launch, _launch(text))
    assert isinstance(rejected, Rejected) and rejected.reason == "invalid", (text, rejected)
    assert _outcome(_launch(text), LEAP_RECORD_MS) == ("dead_lettered", "invalid")


@pytest.mark.parametrize("text", ["2017-01-01T00:59:60+01:00", "2016-12-31T17:29:60-0630"])
def test_a_leap_second_with_a_valid_offset_is_still_counted(text: str) -> None:
    launch = decode(Launch, _launch(text))
    assert isinstance(launch, Launch)
    # the last microsecond of 2016 in UTC, the second the leap second followed
    assert launch.launched_at.astimezone(UTC) == datetime(2016, 12, 31, 23, 59, 59, 999_999, UTC)
    assert _outcome(_launch(text), LEAP_RECORD_MS) == ("tracked", None)


@pytest.mark.parametrize(
    "text",
    [
        b"1" * (MAX_INT_DIGITS + 1),
        b"x" + b"1" * (MAX_INT_DIGITS + 1) + b"x",
        b"1" * MAX_INT_DIGITS + b" " + b"2" * (MAX_INT_DIGITS + 1),
        b"1" * MAX_INT_DIGITS + b" " + b"2" * MAX_INT_DIGITS,
        b"12" * 3_000,
        b"1" * MAX_INT_DIGITS,
    ],
)
def test_the_long_number_search_finds_what_a_plain_search_finds(text: bytes) -> None:
    plain = re.compile(rb"[0-9]{%d}" % (MAX_INT_DIGITS + 1))
    assert bool(_LONG_DIGITS.search(text)) == bool(plain.search(text))


def test_runs_of_digits_one_short_of_the_limit_do_not_hold_the_reader() -> None:
    # 1 MB of 4,300-digit runs took the rescanning search 1.8-2.7 s (the model 1 ms); a stall
    # bound, not a speed claim: heartbeats stop while a batch is routed
    run = b"1" * MAX_INT_DIGITS + b" "
    raw = _launch("2026-03-01T10:00:00Z", b',"note":"' + run * 230 + b'"')
    started = time.perf_counter()
    fast = fast_launch(raw)
    assert time.perf_counter() - started < 0.5
    assert fast is not None and fast.attempt_id == "at-1"  # every run is a valid number


@pytest.mark.parametrize(
    ("text", "outcome"),
    [
        ("2026-03-01T11:00:00Z", ("tracked", None)),
        ("2026-03-01T11:00:00.000001Z", ("dead_lettered", "future")),
        # read as 11:00:00.000000: digits past the microsecond are cut, in every rule alike
        ("2026-03-01T11:00:00.0000001Z", ("tracked", None)),
        ("2026-03-01T12:00:00.000000999+01:00", ("tracked", None)),
        ("2026-03-01T11:00:00.0000019Z", ("dead_lettered", "future")),
    ],
)
def test_instants_are_read_to_the_microsecond_for_the_future_rule(
    text: str, outcome: tuple[str, str | None]
) -> None:
    assert _outcome(_launch(text)) == outcome


def test_the_stored_instant_is_the_one_the_rules_compared() -> None:
    launch = decode(Launch, _launch("2026-03-01T10:00:00.1234569Z"))
    assert isinstance(launch, Launch)
    assert launch.launched_at.microsecond == 123_456
    routed = route_launches([_Record(_launch("2026-03-01T10:00:00.1234569Z"), RECORD_MS)], 4)
    [rows] = routed.rows.values()
    assert rows[0][4] == "2026-03-01T10:00:00.123456+00:00"
