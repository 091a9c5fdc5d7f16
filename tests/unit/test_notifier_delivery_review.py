"""What helper-86's attack on the notifier found (2026-12-05); each test failed when written:
every e-mail lost to a sender whose domain is in other scripts, the first e-mail sent to an
address the latest license took off, live alerts skipped as a backfill after an SMTP outage,
one mailbox mailed twice for an address listed in two capitalisations. Real aiosmtpd servers on
free localhost ports, the notifier's real RocksDB files in tmp_path."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from streams.config.settings import ConfigError, Settings
from streams.notifier.service import Notifier
from streams.notifier.smtp import SmtpSettings
from streams.stages.store import Record
from tests.unit import test_notifier_hostile_addresses_review
from tests.unit.test_notifier_hostile_addresses_review import (
    EVENT,
    GOOD,
    NOW,
    DeadLetters,
    Mailboxes,
    free_port,
)

# an SMTP server without SMTPUTF8, as many are
plain_server = test_notifier_hostile_addresses_review.server


def event_record(offset: int, event_id: str) -> Record:
    value = json.dumps({**EVENT, "event_id": event_id, "notify": [GOOD]}).encode()
    return Record(b"acme", value, "threshold-events", 0, offset, 0)


# -- 1. an SMTP_FROM with an internationalized domain ---------------------------------------------


def test_a_sender_the_server_cannot_take_loses_no_e_mail(
    tmp_path: Path, plain_server: tuple[Mailboxes, int]
) -> None:
    """README: 'an unusable SMTP_FROM' stops the notifier at start; the notifier's own settings
    (a relay denied, signing) lose no e-mail. smtp._sender takes `lms@exämple.com`; on a server
    without SMTPUTF8 aiosmtplib raises SMTPNotSupported at MAIL FROM for EVERY event, which
    smtp.permanent() calls 'the server will never take this message': each event is
    dead-lettered `refused` and never mailed, no retry, no deferral, for every tenant."""
    _, port = plain_server
    env = {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_TLS": "none",
        "SMTP_FROM": "lms@exämple.com",
    }
    try:
        smtp_settings = SmtpSettings.from_env(env)
    except ConfigError:
        return  # stopping at start is what the README promises for an unusable sender
    settings = replace(Settings.from_env({}), state_dir=tmp_path)
    letters = DeadLetters()

    async def run() -> list[str]:
        notifier = Notifier(settings, smtp_settings, clock=lambda: NOW)
        notifier.producer = letters
        try:
            return [
                await asyncio.wait_for(notifier.handle(event_record(n, f"e-{n}")), 30)
                for n in range(3)
            ]
        finally:
            if notifier.deferred_mail is not None:
                await notifier.deferred_mail.stop()
            notifier.close()

    outcomes = asyncio.run(run())
    # either mailed, or kept (deferred / waited for): never thrown away for the notifier's own
    # setting
    assert outcomes.count("refused") == 0, (outcomes, [d["detail"] for d in letters.sent])


# -- 2. the first e-mail of an event to an address the latest license removed ----------------------

GONE = "former-admin@acme.example"


@pytest.mark.parametrize("later", ["address removed", "license removed"])
def test_an_event_is_not_mailed_to_an_address_the_latest_license_removed(
    later: str, tmp_path: Path, plain_server: tuple[Mailboxes, int]
) -> None:
    """CONTRACT: 'The latest license of a tenant governs all of that tenant's windows'; README:
    a deferred e-mail to an address the latest license no longer lists is dropped, and a
    webhook URL a later license takes off gets no more tries. The notifier reads `licenses`
    before each batch (so its book knows the address is gone), yet Notifier.notify() mails
    `event.notify`, the list of the license the event was counted with. A notifier behind
    (an SMTP outage waited out for hours, a restart) mails every queued event to the address
    an administrator took off meanwhile (a former employee). The same address, were it
    deferred behind earlier mail, would be dropped."""
    from tests.unit.test_notifier_retry_leftovers_review import Site, threshold_event

    mailboxes, port = plain_server
    site = Site(tmp_path, port)

    async def scenario() -> str:
        notifier = site.notifier()
        try:
            site.license(GONE, GOOD)  # the license the event was counted with
            # ... then the administrator takes GONE off (or the license), before the notifier
            # gets to the event
            if later == "address removed":
                site.license(GOOD)
            else:
                site.licenses.remove("acme")
            assert await notifier.licenses.catch_up(asyncio.Event())  # as run() does per batch
            return await notifier.handle(threshold_event("e-1", GONE, GOOD))
        finally:
            assert notifier.deferred_mail is not None
            await notifier.deferred_mail.stop()
            notifier.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert all(GONE not in envelope for envelope in mailboxes.envelopes), mailboxes.envelopes


# -- 3. events that waited out an SMTP outage are skipped as a "backfill" --------------------------


def test_events_that_waited_out_an_smtp_outage_are_mailed_not_skipped_as_backfill(
    tmp_path: Path,
) -> None:
    """README: when the SMTP server fails the notifier 'retries with backoff ... before it
    handles the next event, and commits an event only once it is mailed, so nothing is lost
    however long the outage lasts'. Two live crossings on the last day of a monthly window
    (occurred_at 2026-11-30); the server is down for 9 days. The first event is retried and
    mailed when the server is back; the second, queued behind it, is then judged by
    mail.is_backfill() against the notifier's clock (window end 2026-12-01 + 7 days <
    2026-12-09) and recorded `skipped_backfill`: never mailed, though it is no backfill of
    history but a live alert that waited for the server."""
    from datetime import UTC, datetime, timedelta

    import streams.notifier.service as service

    mailboxes = Mailboxes()
    port = free_port()
    smtp_settings = SmtpSettings.from_env(
        {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_TLS": "none"}
    )
    settings = replace(Settings.from_env({}), state_dir=tmp_path)
    occurred = datetime(2026, 11, 30, 20, tzinfo=UTC)
    now = [occurred + timedelta(minutes=1)]
    controller = Controller(mailboxes, hostname="127.0.0.1", port=port)

    def record(offset: int, event_id: str) -> Record:
        value = json.dumps(
            {**EVENT, "event_id": event_id, "notify": [GOOD], "occurred_at": occurred.isoformat()}
        ).encode()
        timestamp_ms = int(occurred.timestamp() * 1000)
        return Record(b"acme", value, "threshold-events", 0, offset, timestamp_ms)

    async def scenario() -> list[str]:
        notifier = Notifier(settings, smtp_settings, clock=lambda: now[0])
        notifier.producer = DeadLetters()
        try:
            first = asyncio.create_task(notifier.handle(record(0, "e-90")))
            await asyncio.sleep(1.5)  # the server is down: e-90 is being retried
            assert not first.done()
            now[0] = occurred + timedelta(days=9)  # ... for 9 days
            controller.start()  # the server is back
            outcomes = [await asyncio.wait_for(first, 60)]
            outcomes.append(await notifier.handle(record(1, "e-100")))
            return outcomes
        finally:
            if notifier.deferred_mail is not None:
                await notifier.deferred_mail.stop()
            notifier.close()

    service.FIRST_BACKOFF_S, saved = 0.5, service.FIRST_BACKOFF_S
    try:
        outcomes = asyncio.run(scenario())
    finally:
        service.FIRST_BACKOFF_S = saved
        controller.stop()
    assert outcomes[0] == "sent"
    assert outcomes[1] == "sent", outcomes  # skipped_backfill: the live e-100 never mailed
    assert len(mailboxes.envelopes) == 2


# -- 4. one address written in two capitalisations -------------------------------------------------


def test_an_address_listed_twice_in_other_capitals_gets_one_e_mail(
    tmp_path: Path, plain_server: tuple[Mailboxes, int]
) -> None:
    """README: 'an address listed twice is mailed once'; licenses.WebhookBook itself compares
    addresses lowered ('a license that writes an address in other capitals still names that
    person'). mail.split_recipients() dedupes by exact string only, so
    `admin@acme.example` and `admin@ACME.example` (the same mailbox: a domain is
    case-insensitive) are two RCPTs of one transaction: the mailbox gets the crossing twice."""
    from tests.unit.test_notifier_hostile_addresses_review import handle

    mailboxes, port = plain_server
    outcome, _ = handle(tmp_path, port, [GOOD, GOOD.replace("acme.example", "ACME.example")])
    assert outcome == "sent"
    assert len(mailboxes.envelopes) == 1 and len(mailboxes.envelopes[0]) == 1, mailboxes.envelopes


@pytest.mark.parametrize(
    ("written", "sent"),
    [
        ("lms@exämple.com", "lms@xn--exmple-cua.com"),
        ("Active Learners <lms@exämple.com>", "Active Learners <lms@xn--exmple-cua.com>"),
        ("lms@example.com", "lms@example.com"),
    ],
)
def test_a_sender_domain_in_other_scripts_is_sent_in_its_ascii_form(written, sent) -> None:
    smtp = SmtpSettings.from_env({"SMTP_HOST": "mail.example", "SMTP_FROM": written})
    assert smtp is not None and smtp.sender == sent
