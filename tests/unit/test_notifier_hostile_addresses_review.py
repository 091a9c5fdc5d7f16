"""Found by a review (2026-12-03, helper-65): `notify` entries the license accepts, sent through
the real aiosmtplib to a real SMTP server (aiosmtpd on a free localhost port). The tests in
test_notifier_rules.py and test_notifier_mailbox_refusals.py put a double in place of
`smtp.send`, so what aiosmtplib itself refuses before it talks to the server was never seen."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import TypeAdapter

from schemas.licenses import NotifyAddress
from streams.config.settings import ConfigError, Settings
from streams.notifier.service import Notifier
from streams.notifier.smtp import SmtpSettings
from streams.stages.store import Record
from tests.unit import test_notifier_review

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
GOOD = "admin@acme.example"
EVENT: dict[str, Any] = {**test_notifier_review.EVENT, "notify": [GOOD]}


class Mailboxes:
    """aiosmtpd's handler: every envelope it took; `refusing` answers RCPT for an address."""

    def __init__(self) -> None:
        self.envelopes: list[list[str]] = []
        self.refusing: dict[str, str] = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refusing:
            return self.refusing[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(list(envelope.rcpt_tos))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server() -> Iterator[tuple[Mailboxes, int]]:
    mailboxes = Mailboxes()
    port = free_port()
    # without SMTPUTF8, as many servers are (aiosmtpd's Controller offers it unless told not to)
    controller = Controller(mailboxes, hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    controller.start()
    try:
        yield mailboxes, port
    finally:
        controller.stop()


class DeadLetters:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None) -> None:
        self.sent.append(json.loads(value))


def handle(tmp_path: Path, port: int, notify: list[str]) -> tuple[str, DeadLetters]:
    settings = replace(Settings.from_env({}), state_dir=tmp_path)
    smtp_settings = SmtpSettings.from_env(
        {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_TLS": "none"}
    )
    value = json.dumps({**EVENT, "notify": notify}).encode()
    letters = DeadLetters()

    async def run() -> str:
        notifier = Notifier(settings, smtp_settings, clock=lambda: NOW)
        notifier.producer = letters
        try:
            return await asyncio.wait_for(
                notifier.handle(Record(b"acme", value, "threshold-events", 0, 7, 0)), 30
            )
        finally:
            if notifier.deferred_mail is not None:
                await notifier.deferred_mail.stop()
            notifier.close()

    return asyncio.run(run()), letters


@pytest.mark.parametrize("hostile", ["ops@[x<y]", 'ops@[a"b]', "ops@[<>]"])
def test_an_address_the_license_takes_and_aiosmtplib_refuses_costs_only_itself(
    tmp_path: Path, server: tuple[Mailboxes, int], hostile: str
) -> None:
    """README: 'A bad entry ... costs only itself: the other addresses are mailed and the event
    is dead-lettered saying which were not.' A domain literal with `<`, `>` or `"` is one bare
    address to the license's rule (the worker publishes it in every event of the tenant), but
    aiosmtplib refuses to put it on an RCPT line with a ValueError, before it sends anything.
    service.send_through_outages catches only SMTPException, OSError and TimeoutError: the
    ValueError leaves handle(), the notifier dies with the event uncommitted, and after every
    restart it dies on the same event again: no e-mail and no webhook of any tenant after it."""
    mailboxes, port = server
    assert TypeAdapter(NotifyAddress).validate_python(hostile) == hostile  # the worker's rule

    outcome, letters = handle(tmp_path, port, [GOOD, hostile])

    assert mailboxes.envelopes == [[GOOD]]
    assert outcome == "sent"
    assert len(letters.sent) == 1 and "notify[1]" in letters.sent[0]["detail"]


def test_a_non_ascii_domain_does_not_cost_the_other_addresses_their_mail(
    tmp_path: Path, server: tuple[Mailboxes, int]
) -> None:
    """An internationalized domain (`ops@exämple.com`) is a valid `notify` entry. On a server
    without SMTPUTF8, aiosmtplib refuses the whole transaction (SMTPNotSupported), which
    smtp.permanent() takes for 'the server will never take this message': the event is
    dead-lettered and the plain ASCII address beside it never gets the e-mail of the crossing."""
    mailboxes, port = server
    idn = "ops@exämple.com"
    assert TypeAdapter(NotifyAddress).validate_python(idn) == idn

    outcome, letters = handle(tmp_path, port, [GOOD, idn])

    assert mailboxes.envelopes == [[GOOD]], f"{GOOD} got no e-mail for the crossing"
    assert outcome == "sent"
    assert len(letters.sent) == 1 and "mailed 1 of 2" in letters.sent[0]["detail"]
    assert "SMTPUTF8" in letters.sent[0]["detail"]


def test_an_address_listed_twice_refused_for_now_is_not_counted_sent(
    tmp_path: Path, server: tuple[Mailboxes, int]
) -> None:
    """A license may list an address twice (nothing dedupes `notify`). When that mailbox
    refuses for now (452), nobody took the e-mail, yet sorted_out() counts `mailed` as the
    addresses tried (2) minus the refusals keyed by address (1): outcome `sent`, and
    notifications_total{outcome="sent"} counts an e-mail no one got."""
    mailboxes, port = server
    mailboxes.refusing[GOOD] = "452 4.2.2 mailbox full"

    outcome, _ = handle(tmp_path, port, [GOOD, GOOD])

    assert mailboxes.envelopes == []
    assert outcome == "deferred"


def test_an_address_listed_twice_gets_one_envelope_recipient(
    tmp_path: Path, server: tuple[Mailboxes, int]
) -> None:
    """The same address twice is RCPT'd twice: a server that does not merge recipients
    delivers the crossing twice to that mailbox."""
    mailboxes, port = server

    outcome, _ = handle(tmp_path, port, [GOOD, GOOD])

    assert outcome == "sent"
    assert mailboxes.envelopes == [[GOOD]]


@pytest.mark.parametrize("sender", ["lms@[a<b]", 'Active Learners <lms@[a"b]>'])
def test_a_sender_aiosmtplib_cannot_use_stops_the_notifier_at_start(sender: str) -> None:
    """README: 'an unusable SMTP_FROM stop[s] the notifier at start with a one-line error'.
    smtp._sender checks SMTP_FROM with the e-mail library only; aiosmtplib refuses these on
    the MAIL FROM line with a ValueError at every event, which kills the notifier (see above)."""
    with pytest.raises(ConfigError, match="SMTP_FROM"):
        SmtpSettings.from_env({"SMTP_HOST": "mail", "SMTP_TLS": "none", "SMTP_FROM": sender})


class SpamFilter(Mailboxes):
    """A server that takes every e-mail but the ones whose text names `word` (a content
    filter: '554 5.7.1 message refused' at the end of DATA)."""

    def __init__(self, word: str) -> None:
        super().__init__()
        self.word = word.encode()

    async def handle_DATA(self, server, session, envelope):
        if self.word in envelope.content:
            return "554 5.7.1 message refused as spam"
        return await super().handle_DATA(server, session, envelope)


def test_one_tenants_message_the_server_refuses_for_its_content_holds_up_no_other(
    tmp_path: Path,
) -> None:
    """A content filter refuses one tenant's message at the end of DATA (554 5.7.1: its id is
    in the Subject and the text) and takes every other. Taken for the server's failure, that
    event was retried for ever, up to 30 s apart, and no e-mail or webhook of any later event
    of any tenant went out (review 2026-12-03). Now its addresses are deferred as `unclear`
    (retried alone until the server is seen taking other mail, then for 24 h) and the next
    event goes on."""
    mailboxes = SpamFilter("casino")
    port = free_port()
    controller = Controller(mailboxes, hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    controller.start()
    settings = replace(Settings.from_env({}), state_dir=tmp_path)
    smtp_settings = SmtpSettings.from_env(
        {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_TLS": "none"}
    )
    letters = DeadLetters()
    events = [
        {**EVENT, "event_id": "e-1"},
        {**EVENT, "event_id": "e-2", "tenant_id": "casino-royale"},
        {**EVENT, "event_id": "e-3", "tenant_id": "globex"},
    ]

    async def run() -> list[str]:
        notifier = Notifier(settings, smtp_settings, clock=lambda: NOW)
        notifier.producer = letters
        outcomes = []
        try:
            for offset, value in enumerate(events):
                record = Record(b"k", json.dumps(value).encode(), "threshold-events", 0, offset, 0)
                outcomes.append(await asyncio.wait_for(notifier.handle(record), 5))
        except TimeoutError:
            outcomes.append("still retrying after 5 s")
        finally:
            notifier.stop()
            if notifier.deferred_mail is not None:
                await notifier.deferred_mail.stop()
            notifier.close()
        return outcomes

    try:
        outcomes = asyncio.run(run())
    finally:
        controller.stop()
    assert outcomes == ["sent", "deferred", "sent"], f"globex's e-mail waits: {outcomes}"
    assert mailboxes.envelopes == [[GOOD], [GOOD]]
