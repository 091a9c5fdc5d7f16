"""The fast path for the record every launch is: a launch in its common form, read with msgspec.

The contract's pydantic model (schemas/launches.py) stays the one definition of a valid launch;
it costs ~3 us a launch, the largest single cost of the launch reader. `fast_launch` reads a
launch in its common form (a JSON object of strings and scalars, an RFC 3339 instant to the
second or microsecond with `Z` or `+hh:mm`) in under half of that, and gives exactly the values
the model would give.

It never rejects: whatever it cannot prove valid (a JSON reading that might differ, a nested
extra field, a number where a string belongs, an id too long, an unusual instant) answers None,
and the caller asks the model, which accepts or rejects with its reason. So the fast path can
only ever be wrong by accepting what the model refuses or by reading a value differently, and
tests/unit/test_launch_decoder.py checks both over valid and hostile inputs against the model.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import msgspec

from schemas.common import EARLIEST_YEAR, LATEST_YEAR, MAX_ID_LENGTH

# What an entity id may not hold: '/' and control characters (schemas.common.EntityId). The four
# ids are searched at once, joined by "\x00" (so that one must be found exactly three times).
_NOT_IN_IDS = re.compile(r"[/\x01-\x1f\x7f]")
# The common form of an instant only; pydantic reads other RFC 3339 forms (a space for the T,
# no seconds, nanoseconds, +hhmm) on the slow path. Offset minutes are checked here: Python
# reads +05:95 as 6 h 35 min, pydantic refuses it (found by the differential test).
_COMMON_INSTANT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"(Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
# pydantic's JSON parser refuses a number with more than 4,300 integer digits (Python's int
# limit), also in an ignored field; found by an attack on this module. The search starts only
# where a run of digits starts: without the look-behind it rescanned a run from each of its
# digits, and runs of 4,300 digits held the event loop for 2 s a megabyte (helper-81).
MAX_INT_DIGITS = 4_300
_LONG_DIGITS = re.compile(rb"(?<![0-9])[0-9]{%d}" % (MAX_INT_DIGITS + 1))
_TRACKING = frozenset(("tracked", "none", "none_resource"))
_LAUNCHED_BY = frozenset(("learner", "admin"))


class _Wire(msgspec.Struct):
    """A launch's fields as JSON strings; unknown fields are skipped, like the model's extras."""

    event_id: str
    tenant_id: str
    learner_id: str
    element_id: str
    attempt_id: str
    launched_at: str
    content_type: str | None = None
    tracking: str = "tracked"
    launched_by: str = "learner"


_read = msgspec.json.Decoder(_Wire).decode


class LaunchFields(msgspec.Struct, frozen=True):
    """The fields of a valid launch, as `schemas.launches.Launch` has them."""

    event_id: str
    tenant_id: str
    learner_id: str
    element_id: str
    attempt_id: str
    launched_at: datetime
    content_type: str | None
    tracking: str
    launched_by: str


def fast_launch(raw: bytes) -> LaunchFields | None:
    """The launch in `raw` if it is valid and in the common form; None means: ask the model."""
    if raw.count(b"{") != 1 or b"[" in raw:
        return None  # a nested extra field (or a brace in a string): the slow path
    if len(raw) > MAX_INT_DIGITS and _LONG_DIGITS.search(raw):
        return None  # a number pydantic refuses (msgspec skips unknown fields unread)
    if not raw.isascii():
        try:  # msgspec skips unknown fields unread: their bytes must be UTF-8 too
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        wire = _read(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    event_id, tenant_id, learner_id = wire.event_id, wire.tenant_id, wire.learner_id
    element_id, attempt_id = wire.element_id, wire.attempt_id
    if (
        not event_id
        or not 0 < len(tenant_id) <= MAX_ID_LENGTH
        or not 0 < len(learner_id) <= MAX_ID_LENGTH
        or not 0 < len(element_id) <= MAX_ID_LENGTH
        or not 0 < len(attempt_id) <= MAX_ID_LENGTH
    ):
        return None
    ids = f"{tenant_id}\x00{learner_id}\x00{element_id}\x00{attempt_id}"
    if ids.count("\x00") != 3 or _NOT_IN_IDS.search(ids) is not None:
        return None
    launched_at = _instant(wire.launched_at)
    if launched_at is None:
        return None
    content_type = wire.content_type
    if content_type is not None:
        content_type = content_type.strip().lower()
    tracking = wire.tracking.strip().lower()
    launched_by = wire.launched_by
    if tracking not in _TRACKING or launched_by not in _LAUNCHED_BY:
        return None
    return LaunchFields(
        event_id,
        tenant_id,
        learner_id,
        element_id,
        attempt_id,
        launched_at,
        content_type,
        tracking,
        launched_by,
    )


def _instant(text: str) -> datetime | None:
    if not _COMMON_INSTANT.fullmatch(text):
        return None
    try:
        instant = datetime.fromisoformat(text)
        year = instant.astimezone(UTC).year
    except (ValueError, OverflowError):  # 25:00, 02-30, an offset of 24 h, before the year 1
        return None
    if not EARLIEST_YEAR <= year < LATEST_YEAR:
        return None
    return instant
