"""helper-87 (2026-12-05), reviewing the notifier's fixes of that day (judged_at, still_listed):
each test failed when written."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from streams.config.settings import Settings
from streams.notifier.service import Notifier
from streams.stages.store import Record
from tests.unit.test_notifier_hostile_addresses_review import EVENT, GOOD, DeadLetters

STARTED = datetime(2026, 11, 1, tzinfo=UTC)  # the notifier has run since
NOW = datetime(2026, 12, 20, tzinfo=UTC)  # the event's window ended 2026-12-01: 19 days ago


def _handle(tmp_path: Path, timestamp_ms: int, started: datetime = STARTED) -> str:
    clock = [started]
    settings = replace(Settings.from_env({}), state_dir=tmp_path)

    async def run() -> str:
        notifier = Notifier(settings, None, clock=lambda: clock[0])
        notifier.producer = DeadLetters()
        clock[0] = NOW
        try:
            value = json.dumps({**EVENT, "event_id": "e-h8", "notify": [GOOD]}).encode()
            return await notifier.handle(
                Record(b"acme", value, "threshold-events", 0, 0, timestamp_ms)
            )
        finally:
            notifier.close()

    return asyncio.run(run())


@pytest.mark.parametrize("timestamp_ms", [-1, 0])
def test_a_backfill_without_a_record_timestamp_is_not_mailed(tmp_path: Path, timestamp_ms) -> None:
    """A record with no timestamp (-1: Kafka's 'none', message format v0) or 0 is written
    now, handled now, its window ended 19 days ago: a backfill of history. judged_at takes
    max(1970, started_at) = the notifier's start (weeks ago), before the window's end: the
    backfill is mailed (before the change it was judged by now and skipped)."""
    assert _handle(tmp_path, timestamp_ms) == "skipped_backfill"


def test_a_live_event_that_waited_out_an_outage_across_a_restart_is_mailed(tmp_path: Path) -> None:
    """The docs: events that waited out an SMTP outage of more than 7 days after their window
    are mailed now (judged by when they were written). The notifier is restarted during the
    outage (a deploy, a stop while retrying: 'handled again on the next start'); the event
    written 2026-11-30 is judged at the new start (2026-12-20), so skipped_backfill: lost."""
    written = int(datetime(2026, 11, 30, 20, tzinfo=UTC).timestamp() * 1000)
    settings = replace(Settings.from_env({}), state_dir=tmp_path)
    Notifier(settings, None, clock=lambda: STARTED).close()  # its first start, before the event
    assert _handle(tmp_path, written, started=NOW) == "outbox"  # restarted during the outage
    # a new notifier (a state folder of its own) reading the same old event: a backfill
    assert _handle(tmp_path / "new", written, started=NOW) == "skipped_backfill"


def _license(*notify: str) -> bytes:
    return json.dumps({"tenant_id": "acme", "learner_limit": 500, "notify": list(notify)}).encode()


def _event() -> Any:
    from streams.notifier.mail import decode_event

    return decode_event(json.dumps({**EVENT, "event_id": "e-1", "notify": [GOOD]}).encode())


def _notifier(tmp_path: Path) -> Notifier:
    settings = replace(Settings.from_env({}), state_dir=tmp_path)
    return Notifier(settings, None, clock=lambda: NOW)


def test_an_address_of_a_stored_license_the_book_refuses_is_still_mailed(tmp_path: Path) -> None:
    """A license written before `notify` was bounded (101 addresses) keeps governing in the
    worker (schemas/licenses.py STORED), so its events carry its list. The notifier's book
    decodes license records without that context: it refuses it and keeps the tenant's earlier
    license. still_listed then drops every address the earlier license did not name."""
    notifier = _notifier(tmp_path)
    try:
        book = notifier.webhook_book
        book.apply(b"acme", _license(GOOD), [0, 1, 1])
        newer = [GOOD] + [f"a{n}@acme.example" for n in range(100)]
        book.apply(b"acme", _license(*newer), [0, 2, 2])
        event = type("E", (), {"tenant_id": "acme", "event_id": "e"})()
        assert notifier.still_listed(event, ["a7@acme.example"]) == ["a7@acme.example"]
    finally:
        notifier.close()


def test_first_send_and_retry_agree_on_what_the_book_says(tmp_path: Path) -> None:
    """The first send mailed the event's list for a tenant the book knows nothing of (its
    license's tombstone compacted away, or a license the book cannot read), where a deferred
    retry dropped the same address (`no_longer_listed` asked `lists`). Both ask
    `stopped_listing` now: a tenant the book knows nothing of keeps the event's list, and one
    whose latest license took the address off (or was removed) loses it, in either path."""
    from streams.notifier.webhooks import Delivery

    notifier = _notifier(tmp_path)

    async def caught_up(stopping: object) -> bool:
        return True

    notifier.licenses.catch_up = caught_up  # type: ignore[method-assign]
    delivery = Delivery(1, "e-1", "acme", GOOD, b"{}", NOW)

    async def both() -> tuple[bool, bool]:
        first = notifier.still_listed(_event(), [GOOD]) == [GOOD]
        retry = await notifier.no_longer_listed(delivery) is None
        return first, retry

    try:
        assert asyncio.run(both()) == (True, True)  # unknown: kept by both
        notifier.webhook_book.apply(b"acme", _license("someone@acme.example"), [0, 1, 1])
        assert asyncio.run(both()) == (False, False)  # taken off: dropped by both
        notifier.webhook_book.apply(b"acme", None, [0, 2, 2])
        assert asyncio.run(both()) == (False, False)  # the license removed: dropped by both
    finally:
        notifier.close()
