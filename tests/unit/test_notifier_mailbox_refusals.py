"""The notifier against an SMTP server that refuses some mail, without a broker or a network: a
mailbox that refuses for now (4xx) costs only itself and is retried for 24 h, then given up
aloud; a server that is down for everyone is still waited for, however long, losing nothing.

The SMTP server is a double in place of `smtp.send` (what aiosmtplib would answer); the
deferred mail's waits run on the webhook tests' virtual clock."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtplib import SMTPRecipientRefused, SMTPRecipientsRefused, SMTPResponse
from prometheus_client import REGISTRY

from streams.config.settings import Settings
from streams.notifier import service, smtp
from streams.notifier.deferred_mail import failed_try
from streams.notifier.service import Notifier, Stopped
from streams.notifier.smtp import SmtpSettings
from streams.notifier.webhooks import (
    Answer,
    DeliveryQueue,
    Dispatcher,
    MemoryKV,
    queue_id,
    retry_at,
)
from streams.stages.store import Record
from tests.unit.licenses_double import LicensesTopic, listing_licenses
from tests.unit.test_notifier_rules import EVENT
from tests.unit.test_webhooks import Hanging, VirtualClock

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)  # the events' window is current
H = timedelta(hours=1)
HOOK = "https://hooks.globex.example/al"
FULL = (452, "4.2.2 mailbox full")
UNKNOWN = (550, "5.1.1 no such mailbox")
GUARD_S = 10  # only so that a notifier that blocks fails the test instead of hanging it


def event(event_id: str, tenant: str, notify: list[str]) -> bytes:
    return json.dumps(
        {**EVENT, "event_id": event_id, "tenant_id": tenant, "notify": notify}
    ).encode()


def record(offset: int, value: bytes) -> Record:
    return Record(b"k", value, "p-threshold-events", 0, offset, 0)


class SmtpServer:
    """What aiosmtplib would make of a server's answers: each address answered by what its
    mailbox is (`refusing[address]`, else it takes the mail), the whole transaction failed
    while `outage` is set; a transaction every address refuses raises, as aiosmtplib does."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.refusing: dict[str, tuple[int, str]] = {}
        self.outage: Exception | None = None
        self.tries: list[tuple[tuple[str, ...], datetime]] = []  # (addresses, when)
        self.received: list[tuple[str, str, datetime]] = []  # (address, event id, when)

    async def send(
        self, message: EmailMessage, settings: SmtpSettings, tls_context: Any
    ) -> dict[str, SMTPResponse]:
        addresses = tuple(address.addr_spec for address in message["To"].addresses)
        self.tries.append((addresses, self.clock.now()))
        if self.outage is not None:
            raise self.outage
        refused = {a: SMTPResponse(*self.refusing[a]) for a in addresses if a in self.refusing}
        if len(refused) == len(addresses):
            raise SMTPRecipientsRefused(
                [SMTPRecipientRefused(r.code, r.message, a) for a, r in refused.items()]
            )
        event_id = message["Message-ID"].strip("<>").split("@")[0]
        for address in addresses:
            if address not in refused:
                self.received.append((address, event_id, self.clock.now()))
        return refused

    def mailed(self, event_id: str) -> list[str]:
        return [address for address, mailed, _ in self.received if mailed == event_id]

    def tried(self, *addresses: str) -> list[timedelta]:
        """When transactions to exactly these addresses were tried, from T0."""
        return [when - T0 for to, when in self.tries if to == addresses]


class DeadLetters:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None) -> None:
        self.sent.append(json.loads(value))


def counted(metric: str, outcome: str) -> float:
    return REGISTRY.get_sample_value(metric, {"outcome": outcome}) or 0.0


def deferred_mail(outcome: str) -> float:
    return counted("active_learners_deferred_mail_total", outcome)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture
def server(clock: VirtualClock, monkeypatch: pytest.MonkeyPatch) -> SmtpServer:
    server = SmtpServer(clock)
    monkeypatch.setattr(smtp, "send", server.send)  # the consumer's tries and the retries'
    monkeypatch.setattr(service, "FIRST_BACKOFF_S", 0.001)  # outages waited out quickly
    return server


@pytest.fixture
def notifiers(tmp_path: Path, clock: VirtualClock) -> Iterator[Callable[[], Notifier]]:
    """Opens the notifier on one state folder, again and again (a restart)."""
    settings = replace(Settings.from_env({}), topic_prefix="p-", state_dir=tmp_path)
    mail = SmtpSettings("mail.example", 25, "lms@example.com", tls="none")
    opened: list[Notifier] = []
    licenses = LicensesTopic()  # kept across restarts, as the topic is

    def open_notifier() -> Notifier:
        if opened:
            opened.pop().close()
        notifier = Notifier(settings, mail, clock=clock.now, retry_clock=clock)
        notifier.producer = DeadLetters()
        notifier.webhook_book.apply(
            b"globex", json.dumps({"tenant_id": "globex", "webhooks": [HOOK]}).encode()
        )
        listing_licenses(notifier, licenses, globex={"webhooks": [HOOK]})
        opened.append(notifier)
        return notifier

    yield open_notifier
    if opened:
        opened.pop().close()


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    async def guarded() -> Any:
        return await asyncio.wait_for(coroutine, timeout=GUARD_S)

    return asyncio.run(guarded())


def reached(clock: VirtualClock, when: datetime) -> Callable[[], bool]:
    return lambda: clock.t >= when


def dispatcher_of(notifier: Notifier) -> Dispatcher:
    assert notifier.deferred_mail is not None, "the notifier has SMTP settings"
    return notifier.deferred_mail


def pending(notifier: Notifier) -> dict[str, int]:
    return dispatcher_of(notifier).queue.pending()


def dead_letters(notifier: Notifier) -> list[dict[str, Any]]:
    assert isinstance(notifier.producer, DeadLetters)
    return notifier.producer.sent


def given_up(notifier: Notifier) -> list[dict[str, Any]]:
    return [state for state, _ in dispatcher_of(notifier).queue.given_up()]


# -- a mailbox that refuses for now costs only itself ---------------------------------------------


def test_a_full_mailbox_holds_up_no_other_tenant_and_is_given_up_after_24_h(
    server: SmtpServer,
    clock: VirtualClock,
    notifiers: Callable[[], Notifier],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.refusing["full@acme.example"] = FULL
    notifier = notifiers()
    before = {outcome: deferred_mail(outcome) for outcome in ("enqueued", "gave_up", "retry")}

    async def scenario() -> list[str]:
        notifier.webhooks = Dispatcher(DeliveryQueue(MemoryKV()), Hanging(), None)
        outcomes = [
            await notifier.handle(record(0, event("acme-1", "acme", ["full@acme.example"]))),
            await notifier.handle(record(1, event("globex-1", "globex", ["ops@globex.example"]))),
        ]
        # both handled (so both offsets committable) before acme's mail is given up
        assert notifier.webhooks.queue.head(queue_id("globex", HOOK)) is not None
        assert server.mailed("globex-1") == ["ops@globex.example"]
        await clock.run(dispatcher_of(notifier))
        await notifier.webhooks.stop()
        return outcomes

    assert run(scenario()) == ["deferred", "sent"]
    # acme's mail was retried alone, 1 s doubling to 10 min apart, until 24 h after it was
    # enqueued, then given up: an ERROR, a metric, and kept with its last answer
    acme_tries = server.tried("full@acme.example")
    # the consumer's try, the queue's first at once, then after 1 s, 2 s, 4 s, ...
    assert acme_tries[:5] == [timedelta(seconds=s) for s in (0, 0, 1, 3, 7)]
    assert max(b - a for a, b in itertools.pairwise(acme_tries)) == timedelta(minutes=10)
    assert acme_tries[-1] == 24 * H
    assert server.mailed("acme-1") == []
    (state,) = given_up(notifier)
    assert (state["event_id"], state["last_error"]) == ("acme-1", "452 4.2.2 mailbox full")
    assert pending(notifier) == {}
    assert deferred_mail("enqueued") - before["enqueued"] == 1
    assert deferred_mail("gave_up") - before["gave_up"] == 1
    assert deferred_mail("retry") - before["retry"] == len(acme_tries) - 2
    (gave_up,) = [r for r in caplog.records if "gave up" in r.getMessage()]
    assert gave_up.levelname == "ERROR"
    assert gave_up.getMessage().startswith(
        "mail: gave up event acme-1 for notify[0] (tenant acme): still failing 24 h after it "
        "was enqueued"
    )
    assert "452 4.2.2 mailbox full" in gave_up.getMessage()
    assert dead_letters(notifier) == []  # nothing was invalid


def test_each_address_costs_only_itself_and_later_mail_waits_behind_a_full_mailbox(
    server: SmtpServer, clock: VirtualClock, notifiers: Callable[[], Notifier]
) -> None:
    server.refusing.update({"full@acme.example": FULL, "gone@acme.example": UNKNOWN})
    notify = ["ok@acme.example", "full@acme.example", "gone@acme.example"]
    notifier = notifiers()

    async def scenario() -> list[str]:
        outcomes = [await notifier.handle(record(0, event("e-1", "acme", notify)))]
        await clock.run(dispatcher_of(notifier), until=reached(clock, T0 + H))
        # still full: the next event is not offered to it, it goes behind e-1
        outcomes.append(await notifier.handle(record(1, event("e-2", "acme", notify))))
        del server.refusing["full@acme.example"]  # the mailbox has room again
        await clock.run(dispatcher_of(notifier))
        return outcomes

    assert run(scenario()) == ["sent", "sent"]
    assert server.mailed("e-1") == ["ok@acme.example", "full@acme.example"]
    assert server.mailed("e-2") == ["ok@acme.example", "full@acme.example"]
    full = [event_id for address, event_id, _ in server.received if address.startswith("full")]
    assert full == ["e-1", "e-2"]  # in order
    # after e-1 was deferred, the full mailbox was asked only by its own queue
    assert ("ok@acme.example", "gone@acme.example") in [to for to, _ in server.tries]
    assert all("full@acme.example" not in to or len(to) == 1 for to, _ in server.tries[1:])
    assert [letter["detail"] for letter in dead_letters(notifier)] == [
        "mailed 1 of 3 addresses (1 more retried later); "
        "the SMTP server refused an address (550 5.1.1 no such mailbox)"
    ] * 2
    assert pending(notifier) == {} and given_up(notifier) == []


# (name, [(from hour h after it was deferred, the server: ok | full | unknown | down)], then
# the e-mail is "delivered" or "given up", at hour h); one mailbox, refused 452 from the start
SCHEDULES: list[tuple[str, list[tuple[float, str]], str, float]] = [
    ("room after 2 h", [(2, "ok")], "delivered", 2),
    ("full for ever", [], "given up", 24),  # the last try at 24 h exactly
    ("the mailbox is deleted", [(3, "unknown")], "given up", 3),  # a 5xx: at once
    # the whole server away from 23 h to 30 h: no give-up meanwhile, and not at 24 h
    ("outage over the deadline, full after", [(23, "down"), (30, "full")], "given up", 30),
    ("outage over the deadline, room after", [(23, "down"), (30, "ok")], "delivered", 30),
]


@pytest.mark.parametrize(
    ("name", "changes", "expected", "at_h"), SCHEDULES, ids=[row[0] for row in SCHEDULES]
)
def test_a_deferred_mail_is_retried_for_24_h_and_waits_out_any_server_outage(
    server: SmtpServer,
    clock: VirtualClock,
    notifiers: Callable[[], Notifier],
    name: str,
    changes: list[tuple[float, str]],
    expected: str,
    at_h: float,
) -> None:
    address = "admin@acme.example"
    server.refusing[address] = FULL
    notifier = notifiers()
    dispatcher = dispatcher_of(notifier)

    def change(what: str) -> None:
        server.refusing.pop(address, None)
        server.outage = None
        if what == "down":
            server.outage = ConnectionRefusedError(111, "Connection refused")
        elif what != "ok":
            server.refusing[address] = UNKNOWN if what == "unknown" else FULL

    async def scenario() -> None:
        assert await notifier.handle(record(0, event("e-1", "acme", [address]))) == "deferred"
        for hours, what in changes:
            await clock.run(dispatcher, until=reached(clock, T0 + hours * H))
            assert pending(notifier), f"{name}: still pending at {hours} h"
            change(what)
        await clock.run(dispatcher)

    run(scenario())
    last_try = server.tries[-1][1] - T0
    if expected == "delivered":
        assert server.mailed("e-1") == [address] and given_up(notifier) == []
    else:
        (state,) = given_up(notifier)
        assert server.mailed("e-1") == [] and state["last_error"].startswith(("452", "550"))
    # the last try comes at the change, or at most one backoff (10 min) after it
    assert at_h * H <= last_try <= at_h * H + timedelta(minutes=10)
    assert pending(notifier) == {}


# -- a server that is down for everyone is waited for ---------------------------------------------

OUTAGES = [
    ConnectionRefusedError(111, "Connection refused"),
    aiosmtplib.SMTPConnectTimeoutError("Timed out connecting to mail.example on port 25"),
    aiosmtplib.SMTPConnectResponseError(421, "4.3.2 Service not available, closing channel"),
    aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"),
    aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"),
    TimeoutError(),
    # a 421 to RCPT: the server closes the connection, whichever address it was given
    SMTPRecipientsRefused([SMTPRecipientRefused(421, "4.7.0 Try again later", "a@acme.example")]),
    aiosmtplib.SMTPSenderRefused(451, "4.3.0 Temporary system failure", "lms@example.com"),
    aiosmtplib.SMTPDataError(452, "4.3.1 Insufficient system storage"),
]


@pytest.mark.parametrize("outage", OUTAGES, ids=lambda exc: type(exc).__name__)
def test_a_server_down_for_everyone_is_waited_for_and_the_event_mailed_once(
    server: SmtpServer, notifiers: Callable[[], Notifier], outage: Exception
) -> None:
    notifier = notifiers()
    retries_before = counted("active_learners_notifications_total", "smtp_retry")
    notify = ["a@acme.example", "b@acme.example"]

    async def outage_of_three_tries() -> str:
        server.outage = outage
        handling = asyncio.ensure_future(notifier.handle(record(0, event("e-1", "acme", notify))))
        while len(server.tries) < 3:
            await asyncio.sleep(0.001)
        assert not handling.done()  # still waiting: the next event waits behind it
        server.outage = None
        return await handling

    assert run(outage_of_three_tries()) == "sent"
    assert server.mailed("e-1") == notify
    assert pending(notifier) == {} and dead_letters(notifier) == []
    assert counted("active_learners_notifications_total", "smtp_retry") - retries_before >= 3


def test_a_stop_during_an_outage_loses_nothing(
    server: SmtpServer, notifiers: Callable[[], Notifier]
) -> None:
    value = event("e-1", "acme", ["a@acme.example"])
    server.outage = ConnectionRefusedError(111, "Connection refused")
    notifier = notifiers()

    async def stopped_while_waiting() -> None:
        handling = asyncio.ensure_future(notifier.handle(record(0, value)))
        while len(server.tries) < 2:
            await asyncio.sleep(0.001)
        notifier.stop()
        with pytest.raises(Stopped):  # run() then commits nothing
            await handling

    run(stopped_while_waiting())
    assert notifier.store.get("e-1") is None and pending(notifier) == {}
    server.outage = None
    notifier = notifiers()  # a restart: the uncommitted event comes again
    assert run(notifier.handle(record(0, value))) == "sent"
    assert server.mailed("e-1") == ["a@acme.example"]


# -- a policy answer (5.7.x) to every address: the settings, or those addresses' own ------------

POLICY = (554, "5.7.1 Relay access denied")


def test_a_relay_refused_to_the_notifier_holds_up_nothing_and_loses_nothing(
    server: SmtpServer, clock: VirtualClock, notifiers: Callable[[], Notifier]
) -> None:
    """A misconfigured relay answers 5.7.1 to every address of every tenant. Each event goes on
    at once (one tenant's answer cannot tell a setting from its own policy), and no e-mail is
    given up however long it lasts, since the server takes none: once fixed, every one goes."""
    addresses = ["a@acme.example", "ops@globex.example"]
    server.refusing.update(dict.fromkeys(addresses, POLICY))
    notifier = notifiers()
    dispatcher = dispatcher_of(notifier)

    async def scenario() -> list[str]:
        outcomes = [
            await notifier.handle(record(0, event("acme-1", "acme", addresses[:1]))),
            await notifier.handle(record(1, event("globex-1", "globex", addresses[1:]))),
        ]
        await clock.run(dispatcher, until=reached(clock, T0 + 30 * H))  # past 24 h
        assert given_up(notifier) == [] and len(pending(notifier)) == 2
        server.refusing.clear()  # the operator fixes the relay
        await clock.run(dispatcher)
        return outcomes

    assert run(scenario()) == ["deferred", "deferred"]
    assert server.mailed("acme-1") == ["a@acme.example"]
    assert server.mailed("globex-1") == ["ops@globex.example"]
    assert pending(notifier) == {} and given_up(notifier) == []
    # the fix is seen within one backoff (10 min)
    assert server.tries[-1][1] - T0 <= 30 * H + timedelta(minutes=10)


def test_an_address_refused_by_policy_while_others_are_mailed_is_given_up_after_24_h(
    server: SmtpServer, clock: VirtualClock, notifiers: Callable[[], Notifier]
) -> None:
    """One tenant's only address is denied (554 5.7.1 recipient rejected) while the server
    takes every other tenant's mail: that proves the answer is the address's own, so it costs
    only itself and is given up after 24 h, like a full mailbox."""
    denied = "denied@acme.example"
    server.refusing[denied] = (554, "5.7.1 <denied@acme.example>: Recipient address rejected")
    notifier = notifiers()
    dispatcher = dispatcher_of(notifier)

    async def scenario() -> list[str]:
        outcomes = [await notifier.handle(record(0, event("acme-1", "acme", [denied])))]
        await clock.run(dispatcher, until=reached(clock, T0 + H))
        assert given_up(notifier) == []  # waited out: no other mail was taken yet
        # later events go on at once, and the server takes them
        outcomes.append(
            await notifier.handle(record(1, event("globex-1", "globex", ["ops@globex.example"])))
        )
        outcomes.append(await notifier.handle(record(2, event("acme-2", "acme", [denied]))))
        await clock.run(dispatcher)
        return outcomes

    assert run(scenario()) == ["deferred", "sent", "deferred"]
    assert server.mailed("globex-1") == ["ops@globex.example"]
    assert [state["event_id"] for state in given_up(notifier)] == ["acme-1", "acme-2"]
    # acme-1 at 24 h after it was enqueued, acme-2 at 24 h after it was (an hour later, give or
    # take the backoff the clock was at)
    assert 25 * H <= server.tried(denied)[-1] <= 25 * H + timedelta(minutes=10)
    assert pending(notifier) == {}


# -- durable: recorded once, resumed after a restart ----------------------------------------------


def test_a_deferred_mail_is_recorded_once_and_resumed_after_a_restart(
    server: SmtpServer,
    clock: VirtualClock,
    notifiers: Callable[[], Notifier],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.refusing["full@acme.example"] = FULL
    value = event("e-1", "acme", ["full@acme.example"])
    notifier = notifiers()
    # a crash after the deferral was recorded and before the event was: it comes again
    monkeypatch.setattr(notifier.store, "put", lambda *args: None)

    async def handled_twice() -> list[str]:
        outcomes = [
            await notifier.handle(record(0, value)),
            await notifier.handle(record(0, value)),
        ]
        await dispatcher_of(notifier).stop()  # the stop: a try under way stays pending
        return outcomes

    assert run(handled_twice()) == ["deferred", "deferred"]
    assert pending(notifier) == {queue_id("acme", "full@acme.example"): 1}
    assert len(server.tries) <= 2  # the redelivery did not offer it to the full mailbox again

    notifier = notifiers()
    del server.refusing["full@acme.example"]

    async def after_restart() -> int:
        resumed = dispatcher_of(notifier).start()
        await clock.run(dispatcher_of(notifier))
        return resumed

    assert run(after_restart()) == 1
    assert server.mailed("e-1") == ["full@acme.example"]
    assert pending(notifier) == {}


# -- the rules, pure ------------------------------------------------------------------------------


def refused(*answers: tuple[int, str]) -> SMTPRecipientsRefused:
    return SMTPRecipientsRefused(
        [
            SMTPRecipientRefused(code, text, f"r{i}@x.example")
            for i, (code, text) in enumerate(answers)
        ]
    )


# a failed transaction -> the server (None), why the message never goes, or (final, for now[,
# unclear])
ABOUT_THE_MAIL: list[tuple[Exception, object]] = [
    (refused(FULL), ((), ("r0@x.example",))),
    (refused((450, "4.2.0 greylisted"), UNKNOWN), (("r1@x.example",), ("r0@x.example",))),
    (refused(UNKNOWN, (553, "mailbox name not allowed")), "refused every recipient (550, 553)"),
    (refused(FULL, (421, "4.7.0 closing")), None),  # the server goes away
    # a policy answer while the server took no recipient: the settings or the address's own
    (refused(FULL, (554, "5.7.1 Relay access denied")), ((), ("r0@x.example",), ("r1@x.example",))),
    (aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported"), "cannot take it: SMTPUTF8"),
    (aiosmtplib.SMTPSenderRefused(452, "4.3.1 no room", "lms@example.com"), None),
    (aiosmtplib.SMTPDataError(451, "4.3.0 try later"), None),
    # the message refused at the end of DATA: this message's own, or every message's
    (aiosmtplib.SMTPDataError(554, "5.7.1 spam"), ((), (), ("r0@x.example", "r1@x.example"))),
    (aiosmtplib.SMTPConnectResponseError(421, "busy"), None),
    (ConnectionRefusedError(111, "refused"), None),
]


@pytest.mark.parametrize(("exc", "expected"), ABOUT_THE_MAIL)
def test_what_a_failed_transaction_is_about(exc: Exception, expected: object) -> None:
    answer = smtp.answer_about_the_mail(exc, ["r0@x.example", "r1@x.example"])
    if isinstance(answer, smtp.Refusals):
        assert isinstance(expected, tuple)
        assert (tuple(answer.final), tuple(answer.for_now), tuple(answer.unclear)) == (
            (*expected, ()) if len(expected) == 2 else expected
        )
    elif expected is None:
        assert answer is None
    else:
        assert isinstance(answer, str) and isinstance(expected, str) and expected in answer


def test_refusals_while_the_server_took_the_others_are_each_about_their_address() -> None:
    refusals = smtp.sort_refusals(
        {
            "a@x.example": SMTPResponse(452, "4.2.2 mailbox full"),
            "b@x.example": SMTPResponse(550, "5.1.1 unknown"),
            "c@x.example": SMTPResponse(554, "5.7.1 relaying to x.example denied"),
        }
    )
    assert refusals.for_now == {"a@x.example": "452 4.2.2 mailbox full"}
    assert list(refusals.final) == ["b@x.example", "c@x.example"]


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (refused(FULL), Answer(False, "452 4.2.2 mailbox full")),
        (refused(UNKNOWN), Answer(False, "550 5.1.1 no such mailbox", final=True)),
        (aiosmtplib.SMTPNotSupported("no SMTPUTF8"), Answer(False, "", final=True)),
        (refused((421, "4.7.0 closing")), Answer(False, "", server_down=True)),
        (ConnectionRefusedError(111, "refused"), Answer(False, "", server_down=True)),
        (TimeoutError(), Answer(False, "TimeoutError", server_down=True)),
        (aiosmtplib.SMTPDataError(451, "4.3.0 try later"), Answer(False, "", server_down=True)),
    ],
)
def test_a_retry_of_one_address_tells_its_refusals_from_the_server_going_away(
    exc: Exception, expected: Answer
) -> None:
    answer = failed_try(exc)
    assert (answer.delivered, answer.final, answer.server_down) == (
        False,
        expected.final,
        expected.server_down,
    )
    assert expected.detail in answer.detail


def test_a_retry_whose_message_is_refused_at_data_is_unclear() -> None:
    answer = failed_try(aiosmtplib.SMTPDataError(554, "5.7.1 message refused as spam"))
    assert (answer.delivered, answer.final, answer.server_down, answer.unclear) == (
        False,
        False,
        False,
        True,
    )
    assert answer.detail == "554 5.7.1 message refused as spam"


def test_a_retry_refused_by_policy_is_unclear() -> None:
    answer = failed_try(refused(POLICY))
    assert (answer.delivered, answer.final, answer.server_down, answer.unclear) == (
        False,
        False,
        False,
        True,
    )
    assert answer.detail == "554 " + POLICY[1]


# (failed at, failures so far incl. this one, the answer) -> next try, or None: give up
RETRY_AT: list[tuple[timedelta, int, Answer, timedelta | None]] = [
    (timedelta(0), 1, Answer(False, "452"), timedelta(seconds=1)),
    (24 * H, 150, Answer(False, "452"), None),  # refused at 24 h: given up
    (timedelta(0), 1, Answer(False, "550", final=True), None),  # refused for good: at once
    (30 * H, 150, Answer(False, "refused", server_down=True), 30 * H + timedelta(minutes=10)),
    (timedelta(0), 3, Answer(False, "refused", server_down=True), timedelta(seconds=4)),
]


@pytest.mark.parametrize(("failed_at", "failures", "answer", "expected"), RETRY_AT)
def test_retry_at(
    failed_at: timedelta, failures: int, answer: Answer, expected: timedelta | None
) -> None:
    at = retry_at(T0, T0 + failed_at, failures, answer)
    assert at == (None if expected is None else T0 + expected)
